//! PDF to markdown from the text layer, page by page. Scanned PDFs without a text layer
//! give an error that says so (there is no OCR here).

use super::markdown::tidy;
use super::{Document, ParseError, Result, malformed};

pub fn parse(bytes: &[u8]) -> Result<Document> {
    // The PDF library panics on some malformed files (a page without a MediaBox, ...):
    // that is a malformed PDF, not a crash.
    let extracted = std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem_by_pages(bytes))
        .map_err(|_| malformed("PDF", "its structure is broken (the PDF reader gave up on it)"))?;
    let pages = extracted.map_err(|e| {
        let reason = e.to_string();
        if reason.to_ascii_lowercase().contains("encrypt") {
            ParseError::Unsupported("the PDF is encrypted: upload an unprotected copy".into())
        } else {
            malformed("PDF", reason)
        }
    })?;
    let mut out = String::new();
    for page in &pages {
        out.push_str(page.trim());
        out.push_str("\n\n");
    }
    let markdown = tidy(&out);
    if markdown.trim().is_empty() && !pages.is_empty() {
        return Err(ParseError::Unsupported(format!(
            "the PDF has {} page(s) but no text layer (a scan?): there is no OCR here",
            pages.len()
        )));
    }
    let mut doc = Document { markdown, ..Default::default() };
    doc.metadata.insert("page_count".into(), pages.len().to_string());
    Ok(doc)
}
