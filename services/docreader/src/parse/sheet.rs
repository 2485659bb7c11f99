//! Spreadsheets (xlsx, xls, ods) and CSV to markdown: one table per sheet under the
//! sheet's name, empty rows and trailing empty columns dropped, within a cell budget.

use std::io::{Cursor, Read};

use calamine::{Data, Ods, Reader, Xls, Xlsx, open_workbook_from_rs};

use super::archive::Archive;
use super::markdown::{push_table, table, tidy};
use super::text::decode;
use super::{Document, Format, Limits, ParseError, Result, malformed};

fn too_many_cells(limit: usize) -> ParseError {
    ParseError::TooLarge(format!("the spreadsheet has more than {limit} cells: split it, or export the part you need"))
}

/// Rows with their trailing empty cells and fully empty rows removed.
fn trim_rows(rows: Vec<Vec<String>>) -> Vec<Vec<String>> {
    let width =
        rows.iter().map(|r| r.iter().rposition(|c| !c.trim().is_empty()).map_or(0, |i| i + 1)).max().unwrap_or(0);
    rows.into_iter()
        .filter(|r| r.iter().any(|c| !c.trim().is_empty()))
        .map(|mut r| {
            r.truncate(width);
            r
        })
        .collect()
}

fn cell_text(d: &Data) -> String {
    match d {
        Data::Empty => String::new(),
        Data::Error(e) => format!("#{e:?}"),
        other => other.to_string(),
    }
}

pub fn parse_workbook(bytes: &[u8], format: Format, limits: &Limits) -> Result<Document> {
    let what = match format {
        Format::Xls => "XLS file",
        Format::Ods => "ODS file",
        _ => "XLSX file",
    };
    if format == Format::Xls {
        check_xls_dimensions(bytes, limits)?;
    } else {
        // The reader below does not bound decompression: check the container first.
        Archive::open(bytes, what, limits)?;
    }
    // The spreadsheet reader panics on some malformed files (slicing past the end of a
    // stream): that is a malformed file, not a crash.
    let read = std::panic::catch_unwind(|| {
        let cursor = Cursor::new(bytes);
        match format {
            Format::Xls => read_all(open_workbook_from_rs::<Xls<_>, _>(cursor).map_err(|e| malformed(what, e))?, what),
            Format::Ods => read_all(open_workbook_from_rs::<Ods<_>, _>(cursor).map_err(|e| malformed(what, e))?, what),
            _ => read_all(open_workbook_from_rs::<Xlsx<_>, _>(cursor).map_err(|e| malformed(what, e))?, what),
        }
    });
    let sheets =
        read.map_err(|_| malformed(what, "its structure is broken (the spreadsheet reader gave up on it)"))??;
    let mut out = String::new();
    let mut cells = 0usize;
    for (name, range) in &sheets {
        let (h, w) = range.get_size();
        cells = cells.saturating_add(h.saturating_mul(w));
        if cells > limits.max_cells {
            return Err(too_many_cells(limits.max_cells));
        }
        let rows = trim_rows(range.rows().map(|r| r.iter().map(cell_text).collect()).collect());
        out.push_str(&format!("\n## {name}\n\n"));
        out.push_str(&table(&rows));
    }
    let mut doc = Document { markdown: tidy(&out), ..Default::default() };
    doc.metadata.insert("sheet_count".into(), sheets.len().to_string());
    Ok(doc)
}

/// The XLS reader reserves memory for the cell count a sheet's DIMENSIONS record claims
/// before reading any cell, so a few hostile bytes can ask for terabytes and abort the
/// process. The claims are checked against the cell budget first.
fn check_xls_dimensions(bytes: &[u8], limits: &Limits) -> Result<()> {
    let what = "XLS file";
    let mut file = cfb::CompoundFile::open(Cursor::new(bytes)).map_err(|e| malformed(what, e))?;
    let name = ["/Workbook", "/Book"]
        .into_iter()
        .find(|n| file.is_stream(n))
        .ok_or_else(|| malformed(what, "it has no Workbook stream"))?;
    let mut stream = Vec::new();
    file.open_stream(name)
        .and_then(|s| s.take(limits.max_unpacked).read_to_end(&mut stream))
        .map_err(|e| malformed(what, e))?;
    // Walk the records as the reader does: the globals from the start, where BOUNDSHEET
    // records give each sheet's position, then each sheet from its position to its EOF.
    let sheets: Vec<usize> = xls_records(&stream, 0)
        .filter(|(typ, body)| *typ == 0x0085 && body.len() >= 4)
        .map(|(_, b)| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    if sheets.len() > MAX_SHEETS {
        return Err(ParseError::TooLarge(format!(
            "the workbook lists {} sheets; the limit is {MAX_SHEETS}",
            sheets.len()
        )));
    }
    for start in sheets.into_iter().filter(|p| *p < stream.len()) {
        let (mut seen_bof, mut depth) = (false, 0usize);
        for (typ, body) in xls_records(&stream, start) {
            if depth > 0 {
                match typ {
                    0x0809 => depth += 1,
                    0x000A => depth -= 1,
                    _ => {}
                }
                continue;
            }
            match typ {
                0x0809 if seen_bof => depth += 1,
                0x0809 => seen_bof = true,
                0x0200 if claimed_cells(body) > limits.max_cells as u64 => {
                    return Err(too_many_cells(limits.max_cells));
                }
                0x000A => break,
                _ => {}
            }
        }
    }
    Ok(())
}

const MAX_SHEETS: usize = 10_000;

/// BIFF records (type, body) from `from` on, until the stream ends or a record is cut short.
fn xls_records(stream: &[u8], from: usize) -> impl Iterator<Item = (u16, &[u8])> {
    let mut pos = from;
    std::iter::from_fn(move || {
        let header = stream.get(pos..pos + 4)?;
        let typ = u16::from_le_bytes([header[0], header[1]]);
        let len = usize::from(u16::from_le_bytes([header[2], header[3]]));
        let body = stream.get(pos + 4..pos + 4 + len)?;
        pos += 4 + len;
        Some((typ, body))
    })
}

/// Rows times columns of a DIMENSIONS record, as the XLS reader computes them (wrapping
/// where it wraps, so a hostile record counts as huge).
fn claimed_cells(body: &[u8]) -> u64 {
    let u16_at = |i: usize| u32::from(u16::from_le_bytes([body[i], body[i + 1]]));
    let u32_at = |i: usize| u32::from_le_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]);
    let (rf, rl, mut cf, cl) = match body.len() {
        10 => (u16_at(0), u16_at(2), u16_at(4), u16_at(6)),
        14 | 16 => (u32_at(0), u32_at(4), u16_at(8), u16_at(10)),
        _ => return 0,
    };
    if cf > 0xFF || cl < cf {
        cf = 0;
    }
    if rl == 0 || cl == 0 {
        return 1;
    }
    let rows = u64::from((rl - 1).wrapping_sub(rf)) + 1;
    let cols = u64::from((cl - 1).wrapping_sub(cf)) + 1;
    rows.saturating_mul(cols)
}

fn read_all<R, RS>(mut workbook: R, what: &str) -> Result<Vec<(String, calamine::Range<Data>)>>
where
    RS: std::io::Read + std::io::Seek,
    R: Reader<RS>,
    R::Error: std::fmt::Display,
{
    let mut sheets = Vec::new();
    for name in workbook.sheet_names() {
        let range = workbook.worksheet_range(&name).map_err(|e| malformed(what, format!("sheet `{name}`: {e}")))?;
        sheets.push((name, range));
    }
    Ok(sheets)
}

/// The most likely delimiter: the candidate that splits the first lines most consistently.
fn sniff_delimiter(text: &str) -> u8 {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).take(20).collect();
    [b',', b'\t', b';', b'|']
        .into_iter()
        .max_by_key(|d| {
            let counts: Vec<usize> = lines.iter().map(|l| l.bytes().filter(|b| b == d).count()).collect();
            let first = counts.first().copied().unwrap_or(0);
            let consistent = counts.iter().filter(|c| **c == first).count();
            (first > 0, consistent, first)
        })
        .unwrap_or(b',')
}

pub fn parse_csv(bytes: &[u8], limits: &Limits) -> Result<Document> {
    let (text, encoding) = decode(bytes)?;
    let delimiter = sniff_delimiter(&text);
    let mut reader =
        csv::ReaderBuilder::new().has_headers(false).flexible(true).delimiter(delimiter).from_reader(text.as_bytes());
    let mut rows: Vec<csv::StringRecord> = Vec::new();
    let mut cells = 0usize;
    let mut width = 0usize;
    for record in reader.records() {
        let record = record.map_err(|e| malformed("CSV file", e))?;
        cells += record.len();
        if cells > limits.max_cells {
            return Err(too_many_cells(limits.max_cells));
        }
        // Rows and trailing columns that are empty say nothing.
        if let Some(last) = (0..record.len()).rev().find(|&i| !record[i].trim().is_empty()) {
            width = width.max(last + 1);
            rows.push(record);
        }
    }
    let mut markdown = String::with_capacity(text.len() + text.len() / 4);
    push_table(&mut markdown, rows.iter().map(|r| r.iter()), width);
    let mut doc = Document { markdown, ..Default::default() };
    doc.metadata.insert("encoding".into(), encoding.into());
    doc.metadata.insert("delimiter".into(), (delimiter as char).to_string());
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_semicolons_and_gbk() {
        let (gbk, _, _) = encoding_rs::GBK.encode("服务;端口\napp;8080\n数据库;5432\n");
        let doc = parse_csv(&gbk, &Limits::default()).unwrap();
        assert_eq!(doc.markdown, "| 服务 | 端口 |\n| --- | --- |\n| app | 8080 |\n| 数据库 | 5432 |\n");
        assert_eq!(doc.metadata["delimiter"], ";");
    }

    #[test]
    fn csv_cell_budget() {
        let limits = Limits { max_cells: 3, ..Limits::default() };
        assert!(matches!(parse_csv(b"a,b\nc,d\n", &limits), Err(ParseError::TooLarge(_))));
    }

    #[test]
    fn dimension_claims_are_counted_like_the_reader_does() {
        let biff8 = |rf: u32, rl: u32, cf: u16, cl: u16| {
            [rf.to_le_bytes().as_slice(), &rl.to_le_bytes(), &cf.to_le_bytes(), &cl.to_le_bytes(), &[0, 0]].concat()
        };
        assert_eq!(claimed_cells(&biff8(0, 3, 0, 2)), 6);
        assert_eq!(claimed_cells(&biff8(0, 1_048_576, 0, 16_384)), 1_048_576 * 16_384);
        assert!(claimed_cells(&biff8(10, 5, 0, 2)) > u64::from(u32::MAX), "a reversed range wraps to huge");
        assert_eq!(claimed_cells(&[0; 3]), 0);
    }

    #[test]
    fn trims_empty_rows_and_columns() {
        let rows = vec![
            vec!["a".into(), "".into(), "".into()],
            vec!["".into(), "".into(), "".into()],
            vec!["b".into(), "c".into(), "".into()],
        ];
        assert_eq!(trim_rows(rows), vec![vec!["a".to_string(), "".into()], vec!["b".into(), "c".into()]]);
    }
}
