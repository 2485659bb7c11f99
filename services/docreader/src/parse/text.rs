//! Plain text and markdown: UTF-8, or a legacy encoding (GBK, Big5, Shift_JIS, ...)
//! detected and converted. Binary content is refused rather than returned as garbage.

use super::{Document, ParseError, Result};

/// Decodes text of unknown encoding. Returns the text and the encoding's name.
pub fn decode(bytes: &[u8]) -> Result<(String, &'static str)> {
    let (text, encoding) = if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        (String::from_utf8_lossy(rest).into_owned(), "UTF-8")
    } else if let Some((encoding, bom)) = encoding_rs::Encoding::for_bom(bytes) {
        // UTF-16 files (Windows Notepad's "Unicode") carry a BOM.
        let (text, _) = encoding.decode_without_bom_handling(&bytes[bom..]);
        (text.into_owned(), encoding.name())
    } else if let Ok(s) = std::str::from_utf8(bytes) {
        (s.to_string(), "UTF-8")
    } else {
        let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
        // The first 16 KiB tell the encoding as well as the whole file, at a fraction of the cost.
        let sample = &bytes[..bytes.len().min(16 << 10)];
        detector.feed(sample, sample.len() == bytes.len());
        // The TLD hint breaks ties the way our users' files lean: GBK over Shift_JIS for
        // short Chinese texts, which are often valid in both.
        let encoding = detector.guess(Some(b"cn"), chardetng::Utf8Detection::Allow);
        let (text, _, _) = encoding.decode(bytes);
        (text.into_owned(), encoding.name())
    };
    if looks_binary(&text) {
        return Err(ParseError::Malformed("the content is binary, not text".into()));
    }
    Ok((text, encoding))
}

/// Text has no NULs and almost no control characters or undecodable bytes.
fn looks_binary(text: &str) -> bool {
    let mut total = 0usize;
    let mut odd = 0usize;
    for c in text.chars() {
        total += 1;
        match c {
            '\0' => return true,
            '\t' | '\n' | '\r' | '\x0c' | '\x1b' => {}
            '\u{FFFD}' => odd += 1,
            c if c.is_control() && (c as u32) < 0x20 => odd += 1,
            _ => {}
        }
    }
    odd * 50 > total.max(1)
}

pub fn parse_text(bytes: &[u8]) -> Result<Document> {
    let (text, encoding) = decode(bytes)?;
    let markdown = if text.contains('\r') { text.replace("\r\n", "\n") } else { text };
    let mut doc = Document { markdown, ..Default::default() };
    doc.metadata.insert("encoding".into(), encoding.into());
    Ok(doc)
}

pub fn parse_markdown(bytes: &[u8]) -> Result<Document> {
    parse_text(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_gbk() {
        let (gbk, _, _) = encoding_rs::GBK.encode("数据库备份每天凌晨执行，恢复演练每月一次。");
        let doc = parse_text(&gbk).unwrap();
        assert_eq!(doc.markdown, "数据库备份每天凌晨执行，恢复演练每月一次。");
        assert_eq!(doc.metadata["encoding"], "GBK");
    }

    #[test]
    fn strips_the_bom_and_normalises_newlines() {
        let doc = parse_text(b"\xEF\xBB\xBFline one\r\nline two").unwrap();
        assert_eq!(doc.markdown, "line one\nline two");
    }

    #[test]
    fn reads_utf16_with_a_bom() {
        let mut bytes = vec![0xFF, 0xFE];
        bytes.extend("备份 ok".encode_utf16().flat_map(u16::to_le_bytes));
        let doc = parse_text(&bytes).unwrap();
        assert_eq!(doc.markdown, "备份 ok");
        assert_eq!(doc.metadata["encoding"], "UTF-16LE");
    }

    #[test]
    fn refuses_binary() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
        assert!(parse_text(&bytes).is_err());
    }
}
