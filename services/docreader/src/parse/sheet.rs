//! Spreadsheets (xlsx, xls, ods) and CSV to markdown: one table per sheet under the
//! sheet's name, empty rows and trailing empty columns dropped, within a cell budget.

use std::io::Cursor;

use calamine::{Data, Ods, Reader, Xls, Xlsx, open_workbook_from_rs};

use super::archive::Archive;
use super::markdown::{table, tidy};
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
    if format != Format::Xls {
        // The reader below does not bound decompression: check the container first.
        Archive::open(bytes, what, limits)?;
    }
    let cursor = Cursor::new(bytes);
    let sheets: Vec<(String, calamine::Range<Data>)> = match format {
        Format::Xls => read_all(open_workbook_from_rs::<Xls<_>, _>(cursor).map_err(|e| malformed(what, e))?, what)?,
        Format::Ods => read_all(open_workbook_from_rs::<Ods<_>, _>(cursor).map_err(|e| malformed(what, e))?, what)?,
        _ => read_all(open_workbook_from_rs::<Xlsx<_>, _>(cursor).map_err(|e| malformed(what, e))?, what)?,
    };
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
    let mut rows = Vec::new();
    let mut cells = 0usize;
    for record in reader.records() {
        let record = record.map_err(|e| malformed("CSV file", e))?;
        cells += record.len();
        if cells > limits.max_cells {
            return Err(too_many_cells(limits.max_cells));
        }
        rows.push(record.iter().map(str::to_string).collect());
    }
    let mut doc = Document { markdown: table(&trim_rows(rows)), ..Default::default() };
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
    fn trims_empty_rows_and_columns() {
        let rows = vec![
            vec!["a".into(), "".into(), "".into()],
            vec!["".into(), "".into(), "".into()],
            vec!["b".into(), "c".into(), "".into()],
        ];
        assert_eq!(trim_rows(rows), vec![vec!["a".to_string(), "".into()], vec!["b".into(), "c".into()]]);
    }
}
