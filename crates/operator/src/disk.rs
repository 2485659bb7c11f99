//! Free disk space: what doctor reports, and the check a command makes before it writes
//! gigabytes (a bundle's images), so that a full disk is named before the work, not
//! found as a write error half-way through it.

use std::path::Path;

use anyhow::{Result, bail};

pub const GIB: u64 = 1024 * 1024 * 1024;
/// Below this, image builds and the database will run out of room: fail.
pub const DISK_FAIL_BYTES: u64 = 2 * GIB;
/// Below this, a full build plus a few backups will not fit: warn.
pub const DISK_WARN_BYTES: u64 = 10 * GIB;

/// The filesystem holding `path` (or, for a path not made yet, its nearest existing
/// ancestor): its id and the bytes an unprivileged writer may still use.
pub fn free(path: &Path) -> Option<(u64, u64)> {
    let existing = path.ancestors().find(|p| p.exists()).unwrap_or(Path::new("/"));
    let stat = rustix::fs::statvfs(existing).ok()?;
    Some((stat.f_fsid, stat.f_bavail * stat.f_frsize))
}

/// Fails, naming the numbers and the fix, when `dir`'s filesystem has less than `need`
/// bytes free for `doing`. Unknown free space passes (the write itself will tell).
pub fn ensure_free(dir: &Path, need: u64, doing: &str) -> Result<()> {
    let Some((_, available)) = free(dir) else { return Ok(()) };
    if available < need {
        bail!(
            "{doing} needs about {} free in {}, and that disk has {}: free space (`docker system prune` for \
             unused images and build cache, `cargo clean` for build files) or write elsewhere",
            human_bytes(need),
            dir.display(),
            human_bytes(available)
        );
    }
    Ok(())
}

pub fn human_bytes(bytes: u64) -> String {
    if bytes >= GIB {
        format!("{:.1} GiB", bytes as f64 / GIB as f64)
    } else {
        format!("{} MiB", bytes / (1024 * 1024))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_larger_than_the_disk_is_refused_before_it_starts() {
        let dir = tempfile::tempdir().unwrap();
        let (_, available) = free(dir.path()).unwrap();
        assert!(ensure_free(dir.path(), 1, "a test").is_ok());
        let err = ensure_free(&dir.path().join("not/made/yet"), available + 1024 * GIB, "dist --images")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("dist --images needs about"), "{err}");
        assert!(err.contains("docker system prune") && err.contains(&dir.path().display().to_string()), "{err}");
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(3 * GIB / 2), "1.5 GiB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5 MiB");
    }
}
