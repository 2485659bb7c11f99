//! Documents to markdown. `parse` picks the parser from the declared type (or the file
//! name's extension), checks that the bytes really are that format, and runs it within
//! `Limits`. Every parser is plain synchronous code over a byte slice: the service runs
//! it on a blocking thread with a timeout and contains panics.

mod archive;
mod docx;
mod epub;
mod html;
mod markdown;
mod pdf;
mod pptx;
mod sheet;
mod text;
mod xml;

use std::collections::BTreeMap;

pub use html::html_to_markdown;

/// Bounds on the work one document may cause.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest input accepted, in bytes.
    pub max_bytes: usize,
    /// Most bytes an archive (docx, xlsx, epub, ...) may expand to: stops zip bombs.
    pub max_unpacked: u64,
    /// Most entries an archive may hold.
    pub max_entries: usize,
    /// Most spreadsheet cells rendered.
    pub max_cells: usize,
    /// Deepest element nesting followed in HTML and XML; deeper content is flattened.
    pub max_depth: usize,
}

impl Limits {
    pub fn with_max_bytes(max_bytes: usize) -> Limits {
        Limits {
            max_bytes,
            max_unpacked: (max_bytes as u64 * 8).max(64 << 20),
            max_entries: 20_000,
            max_cells: 2_000_000,
            max_depth: 256,
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::with_max_bytes(50 << 20)
    }
}

/// An image found in a document, returned to the caller to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub filename: String,
    /// How the markdown refers to it: `![](original_ref)`.
    pub original_ref: String,
    pub mime_type: String,
    pub data: Vec<u8>,
}

#[derive(Debug, Default, Clone)]
pub struct Document {
    pub markdown: String,
    pub images: Vec<Image>,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// A format we do not read (legacy Office, unknown types).
    #[error("{0}")]
    Unsupported(String),
    /// The bytes are not a valid document of the declared format.
    #[error("{0}")]
    Malformed(String),
    /// The document, or what it expands to, exceeds a limit.
    #[error("{0}")]
    TooLarge(String),
}

pub type Result<T> = std::result::Result<T, ParseError>;

fn malformed(what: &str, reason: impl std::fmt::Display) -> ParseError {
    ParseError::Malformed(format!("not a valid {what}: {reason}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Markdown,
    Html,
    Pdf,
    Docx,
    Xlsx,
    Xls,
    Ods,
    Csv,
    Pptx,
    Epub,
    Image(&'static str),
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Text => "txt",
            Format::Markdown => "md",
            Format::Html => "html",
            Format::Pdf => "pdf",
            Format::Docx => "docx",
            Format::Xlsx => "xlsx",
            Format::Xls => "xls",
            Format::Ods => "ods",
            Format::Csv => "csv",
            Format::Pptx => "pptx",
            Format::Epub => "epub",
            Format::Image(_) => "image",
        }
    }
}

/// The file types this parser accepts, as `ListEngines` reports them.
pub const FILE_TYPES: &[&str] = &[
    "txt", "text", "log", "md", "markdown", "html", "htm", "xhtml", "pdf", "docx", "xlsx", "xlsm", "xls", "ods", "csv",
    "tsv", "pptx", "epub", "png", "jpg", "jpeg", "gif", "bmp", "webp", "tif", "tiff",
];

/// The format for a declared type (`pdf`, `.pdf`, `application/pdf`) or, failing that,
/// the file name's extension.
pub fn format_for(file_name: &str, file_type: &str) -> Result<Format> {
    let declared = file_type.trim().trim_start_matches('.').to_ascii_lowercase();
    let ext = file_name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    let key = if declared.is_empty() { ext.as_str() } else { declared.as_str() };
    let key = key.rsplit('/').next().unwrap_or(key);
    Ok(match key {
        "txt" | "text" | "plain" | "log" => Format::Text,
        "md" | "markdown" => Format::Markdown,
        "html" | "htm" | "xhtml" | "xhtml+xml" => Format::Html,
        "pdf" => Format::Pdf,
        "docx" | "vnd.openxmlformats-officedocument.wordprocessingml.document" => Format::Docx,
        "xlsx" | "xlsm" | "vnd.openxmlformats-officedocument.spreadsheetml.sheet" => Format::Xlsx,
        "xls" | "vnd.ms-excel" => Format::Xls,
        "ods" | "vnd.oasis.opendocument.spreadsheet" => Format::Ods,
        "csv" | "tsv" | "tab-separated-values" => Format::Csv,
        "pptx" | "vnd.openxmlformats-officedocument.presentationml.presentation" => Format::Pptx,
        "epub" | "epub+zip" => Format::Epub,
        "png" => Format::Image("image/png"),
        "jpg" | "jpeg" => Format::Image("image/jpeg"),
        "gif" => Format::Image("image/gif"),
        "bmp" => Format::Image("image/bmp"),
        "webp" => Format::Image("image/webp"),
        "tif" | "tiff" => Format::Image("image/tiff"),
        "doc" | "msword" => {
            return Err(ParseError::Unsupported(
                "legacy Word (.doc) files are not supported: save the document as .docx and upload that".into(),
            ));
        }
        "ppt" | "vnd.ms-powerpoint" => {
            return Err(ParseError::Unsupported(
                "legacy PowerPoint (.ppt) files are not supported: save the presentation as .pptx and upload that"
                    .into(),
            ));
        }
        "" => {
            return Err(ParseError::Unsupported(
                "no file type and no extension: say what the file is (file_type)".into(),
            ));
        }
        other => {
            return Err(ParseError::Unsupported(format!(
                "file type `{other}` is not supported; supported: {}",
                FILE_TYPES.join(", ")
            )));
        }
    })
}

const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
const OLE_MAGIC: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

/// Refuses bytes that cannot be the declared format (a renamed file, a truncated upload).
fn check_magic(format: Format, bytes: &[u8]) -> Result<()> {
    let head = &bytes[..bytes.len().min(1024)];
    let ok = match format {
        Format::Pdf => head.windows(5).any(|w| w == b"%PDF-"),
        Format::Docx | Format::Xlsx | Format::Ods | Format::Pptx | Format::Epub => bytes.starts_with(ZIP_MAGIC),
        Format::Xls => bytes.starts_with(OLE_MAGIC),
        Format::Image(mime) => image_magic(bytes) == Some(mime),
        // Text formats: binary content is caught by the decoder.
        Format::Text | Format::Markdown | Format::Html | Format::Csv => true,
    };
    if ok {
        return Ok(());
    }
    let actually = if bytes.starts_with(ZIP_MAGIC) {
        "a ZIP container"
    } else if bytes.starts_with(OLE_MAGIC) {
        "a legacy Office (OLE) file"
    } else if head.starts_with(b"%PDF") {
        "a PDF"
    } else {
        image_magic(bytes).unwrap_or("something else")
    };
    Err(ParseError::Malformed(format!(
        "the content is not {} (it looks like {actually}): the file name or type does not match the file",
        match format {
            Format::Image(mime) => mime,
            other => other.name(),
        }
    )))
}

fn image_magic(bytes: &[u8]) -> Option<&'static str> {
    const SIGS: &[(&[u8], &str)] = &[
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xFF\xD8\xFF", "image/jpeg"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
        (b"BM", "image/bmp"),
        (b"II*\x00", "image/tiff"),
        (b"MM\x00*", "image/tiff"),
    ];
    if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Some("image/webp");
    }
    SIGS.iter().find(|(sig, _)| bytes.starts_with(sig)).map(|(_, mime)| *mime)
}

/// Parses one document. `file_name` is only used to pick the format when `file_type` is
/// empty, and in metadata.
pub fn parse(bytes: &[u8], file_name: &str, file_type: &str, limits: &Limits) -> Result<Document> {
    if bytes.len() > limits.max_bytes {
        return Err(ParseError::TooLarge(format!(
            "the file is {} bytes; the limit is {} MB (DOCREADER_GRPC_MAX_FILE_SIZE_MB)",
            bytes.len(),
            limits.max_bytes >> 20
        )));
    }
    let format = format_for(file_name, file_type)?;
    if bytes.is_empty() {
        return Err(ParseError::Malformed("the file is empty (0 bytes)".into()));
    }
    check_magic(format, bytes)?;
    let mut doc = match format {
        Format::Text => text::parse_text(bytes)?,
        Format::Markdown => text::parse_markdown(bytes)?,
        Format::Html => html::parse(bytes, limits)?,
        Format::Pdf => pdf::parse(bytes)?,
        Format::Docx => docx::parse(bytes, limits)?,
        Format::Xlsx | Format::Xls | Format::Ods => sheet::parse_workbook(bytes, format, limits)?,
        Format::Csv => sheet::parse_csv(bytes, limits)?,
        Format::Pptx => pptx::parse(bytes, limits)?,
        Format::Epub => epub::parse(bytes, limits)?,
        Format::Image(mime) => image_only(bytes, file_name, mime),
    };
    doc.metadata.insert("format".into(), format.name().into());
    doc.metadata.insert("file_name".into(), file_name.into());
    doc.metadata.insert("source_bytes".into(), bytes.len().to_string());
    Ok(doc)
}

/// An image is returned as itself: there is no OCR here, so the markdown only points at it.
fn image_only(bytes: &[u8], file_name: &str, mime: &str) -> Document {
    let name = if file_name.is_empty() {
        "image".to_string()
    } else {
        file_name.rsplit('/').next().unwrap_or(file_name).to_string()
    };
    let original_ref = format!("images/{name}");
    let mut doc = Document { markdown: format!("![{name}]({original_ref})\n"), ..Default::default() };
    doc.images.push(Image { filename: name, original_ref, mime_type: mime.into(), data: bytes.to_vec() });
    doc.metadata.insert("ocr".into(), "unavailable: the image is returned as is, without recognised text".into());
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_from_type_or_extension() {
        assert_eq!(format_for("a.PDF", ""), Ok(Format::Pdf));
        assert_eq!(format_for("a.bin", ".docx"), Ok(Format::Docx));
        assert_eq!(format_for("", "application/pdf"), Ok(Format::Pdf));
        assert_eq!(format_for("notes", "text/plain"), Ok(Format::Text));
        assert!(matches!(format_for("old.doc", ""), Err(ParseError::Unsupported(m)) if m.contains(".docx")));
        assert!(matches!(format_for("x.exe", ""), Err(ParseError::Unsupported(m)) if m.contains("`exe`")));
        assert!(matches!(format_for("noext", ""), Err(ParseError::Unsupported(_))));
    }

    #[test]
    fn refuses_a_renamed_file() {
        let err = parse(b"PK\x03\x04rest", "report.pdf", "", &Limits::default()).unwrap_err();
        assert!(matches!(&err, ParseError::Malformed(m) if m.contains("not pdf") && m.contains("ZIP")), "{err}");
        let err = parse(b"%PDF-1.7 ...", "sheet.xlsx", "", &Limits::default()).unwrap_err();
        assert!(matches!(&err, ParseError::Malformed(m) if m.contains("looks like a PDF")), "{err}");
    }

    #[test]
    fn refuses_empty_and_oversize_input() {
        assert!(
            matches!(parse(b"", "a.txt", "", &Limits::default()), Err(ParseError::Malformed(m)) if m.contains("empty"))
        );
        let limits = Limits::with_max_bytes(4);
        assert!(matches!(parse(b"12345", "a.txt", "", &limits), Err(ParseError::TooLarge(m)) if m.contains("limit")));
    }

    #[test]
    fn an_image_comes_back_as_itself() {
        let png = b"\x89PNG\r\n\x1a\n0000";
        let doc = parse(png, "scan.png", "", &Limits::default()).unwrap();
        assert_eq!(doc.images.len(), 1);
        assert_eq!(doc.images[0].mime_type, "image/png");
        assert!(doc.markdown.contains("images/scan.png"));
        assert!(doc.metadata["ocr"].starts_with("unavailable"));
    }
}
