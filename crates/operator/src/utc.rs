//! Unix time to a UTC calendar date and back, for migration versions, image timestamps,
//! backup names and recovery targets.

/// `[year, month, day, hour, minute, second]` in UTC for a Unix time.
pub fn civil(unix_secs: u64) -> [i64; 6] {
    let days = (unix_secs / 86_400) as i64;
    let secs = (unix_secs % 86_400) as i64;
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    [year, month, day, secs / 3600, secs % 3600 / 60, secs % 60]
}

/// Unix seconds of a UTC calendar date and time.
pub fn unix([year, month, day, h, m, s]: [i64; 6]) -> i64 {
    // Days from 1970-01-01 (the inverse of `civil`).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + h * 3600 + m * 60 + s
}

/// A moment an operator types, in UTC: `2026-12-01 16:55`, with seconds or not, a `T` or a
/// space between date and time, a trailing `Z`, `UTC` or `+00:00` allowed. Any other offset is
/// refused rather than guessed.
pub fn parse(text: &str) -> Result<u64, String> {
    let wrong = || format!("`{text}` is not a time in UTC: write it as YYYY-MM-DD HH:MM[:SS], e.g. 2026-12-01 16:55");
    let mut t = text.trim();
    for zone in ["Z", "UTC", "+00:00", "+00"] {
        t = t.strip_suffix(zone).unwrap_or(t).trim_end();
    }
    let (date, time) = t.split_once([' ', 'T']).ok_or_else(wrong)?;
    let numbers = |s: &str, sep: char| -> Option<Vec<i64>> { s.split(sep).map(|n| n.parse().ok()).collect() };
    let d = numbers(date, '-').filter(|d| d.len() == 3).ok_or_else(wrong)?;
    let mut hms = numbers(time, ':').filter(|t| (2..=3).contains(&t.len())).ok_or_else(wrong)?;
    hms.resize(3, 0);
    let fields = [d[0], d[1], d[2], hms[0], hms[1], hms[2]];
    let secs = unix(fields);
    // A date that does not exist (2026-02-30, 25:00) comes back different.
    if secs < 0 || civil(secs as u64) != fields {
        return Err(wrong());
    }
    Ok(secs as u64)
}

/// Unix seconds as `YYYYMMDDTHHMMSSZ`: the time in the names of backups, which sort by it.
pub fn stamp(unix_secs: u64) -> String {
    let [y, mo, d, h, mi, s] = civil(unix_secs);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// A `stamp` back to Unix seconds.
pub fn parse_stamp(stamp: &str) -> Option<u64> {
    let b = stamp.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| stamp.get(r)?.parse::<i64>().ok();
    let fields = [n(0..4)?, n(4..6)?, n(6..8)?, n(9..11)?, n(11..13)?, n(13..15)?];
    let secs = unix(fields);
    (secs >= 0 && civil(secs as u64) == fields).then_some(secs as u64)
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(unix_secs: u64) -> String {
    let [year, month, day, h, m, s] = civil(unix_secs);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
}

/// Now, in Unix seconds.
pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typed_utc_time_round_trips_and_anything_else_is_refused() {
        let t = parse("2026-12-01 16:55").unwrap();
        assert_eq!(rfc3339(t), "2026-12-01T16:55:00Z");
        assert_eq!(parse("2026-12-01T16:55:07Z").unwrap(), t + 7);
        assert_eq!(parse("2026-12-01 16:55:07+00:00").unwrap(), t + 7);
        assert_eq!(parse("2024-02-29 00:00 UTC").unwrap(), 1_709_164_800);
        assert_eq!(stamp(t), "20261201T165500Z");
        assert_eq!(parse_stamp("20261201T165500Z"), Some(t));
        assert_eq!(parse_stamp("20261131T165500Z"), None);
        for bad in ["2026-02-30 10:00", "2026-12-01", "yesterday", "2026-12-01 25:00", "2026-12-01 16:55+02:00"] {
            assert!(parse(bad).unwrap_err().contains("YYYY-MM-DD HH:MM"), "{bad}");
        }
    }
}
