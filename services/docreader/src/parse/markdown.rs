//! Small markdown writers shared by the parsers.

/// Appends a cell's text made safe for a markdown table: one line, pipes escaped.
pub fn push_cell(out: &mut String, text: &str) {
    let plain = !text.bytes().any(|b| matches!(b, b'|' | b'\n' | b'\r' | b'\t'))
        && !text.contains("  ")
        && !text.starts_with(' ')
        && !text.ends_with(' ');
    if plain {
        out.push_str(text);
        return;
    }
    for (i, word) in text.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&word.replace('|', "\\|"));
    }
}

/// Appends a markdown table of `width` columns; the first row is the header. Short rows
/// are padded with empty cells, longer ones cut.
pub fn push_table<'a, R, C>(out: &mut String, rows: R, width: usize)
where
    R: IntoIterator<Item = C>,
    C: IntoIterator<Item = &'a str>,
{
    if width == 0 {
        return;
    }
    for (i, row) in rows.into_iter().enumerate() {
        out.push('|');
        let mut cells = row.into_iter();
        for _ in 0..width {
            out.push(' ');
            push_cell(out, cells.next().unwrap_or(""));
            out.push_str(" |");
        }
        out.push('\n');
        if i == 0 {
            out.push('|');
            out.push_str(&" --- |".repeat(width));
            out.push('\n');
        }
    }
}

/// A markdown table; the first row is the header. Rows are padded to the widest row.
pub fn table(rows: &[Vec<String>]) -> String {
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = String::new();
    push_table(&mut out, rows.iter().map(|r| r.iter().map(String::as_str)), width);
    out
}

/// Collapses runs of blank lines to one and trims the ends.
pub fn tidy(markdown: &str) -> String {
    let mut out = String::with_capacity(markdown.len());
    let mut blank = 0;
    for line in markdown.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        out.push_str(line);
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_and_escape() {
        let t = table(&[vec!["名称".into(), "a|b".into()], vec!["x\ny".into()]]);
        assert_eq!(t, "| 名称 | a\\|b |\n| --- | --- |\n| x y |  |\n");
        assert_eq!(table(&[]), "");
    }

    #[test]
    fn tidy_collapses_blank_lines() {
        assert_eq!(tidy("\n\na  \n\n\n\nb\nc\n\n"), "a\n\nb\nc\n");
    }
}
