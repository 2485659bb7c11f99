//! ZIP containers (docx, xlsx, pptx, ods, epub) read within limits: a bounded number of
//! entries and a budget of decompressed bytes shared by all reads, so a zip bomb fails
//! with an error instead of filling memory.

use std::cell::Cell;
use std::io::{Cursor, Read};

use zip::ZipArchive;

use super::{Limits, ParseError, Result, malformed};

pub struct Archive<'a> {
    zip: ZipArchive<Cursor<&'a [u8]>>,
    budget: Cell<u64>,
    limit: u64,
    what: &'static str,
}

impl<'a> Archive<'a> {
    pub fn open(bytes: &'a [u8], what: &'static str, limits: &Limits) -> Result<Archive<'a>> {
        let zip = ZipArchive::new(Cursor::new(bytes)).map_err(|e| malformed(what, e))?;
        if zip.len() > limits.max_entries {
            return Err(ParseError::TooLarge(format!(
                "the {what} holds {} files; the limit is {}",
                zip.len(),
                limits.max_entries
            )));
        }
        // Declared sizes can lie, so reads are also counted; but a declared bomb fails early.
        let declared = zip.decompressed_size().unwrap_or(0);
        let archive = Archive { zip, budget: Cell::new(limits.max_unpacked), limit: limits.max_unpacked, what };
        if declared > u128::from(limits.max_unpacked) {
            return Err(archive.bomb());
        }
        Ok(archive)
    }

    fn bomb(&self) -> ParseError {
        ParseError::TooLarge(format!(
            "the {} expands to more than {} MB: refused (a zip bomb, or a document too large to parse)",
            self.what,
            self.limit >> 20
        ))
    }

    pub fn names(&self) -> Vec<String> {
        self.zip.file_names().filter_map(|n| n.ok().map(|n| n.into_owned())).collect()
    }

    /// The entry's bytes, or `None` when there is no such entry.
    pub fn read(&mut self, name: &str) -> Result<Option<Vec<u8>>> {
        let what = self.what;
        let budget = self.budget.get();
        let mut file = match self.zip.by_name(name) {
            Ok(f) => f,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(malformed(what, format!("{name}: {e}"))),
        };
        let mut data = Vec::new();
        (&mut file).take(budget + 1).read_to_end(&mut data).map_err(|e| malformed(what, format!("{name}: {e}")))?;
        drop(file);
        if data.len() as u64 > budget {
            return Err(self.bomb());
        }
        self.budget.set(budget - data.len() as u64);
        Ok(Some(data))
    }

    /// The entry as UTF-8 text (XML parts), or `None` when missing.
    pub fn read_text(&mut self, name: &str) -> Result<Option<String>> {
        let what = self.what;
        match self.read(name)? {
            None => Ok(None),
            Some(bytes) => {
                String::from_utf8(bytes).map(Some).map_err(|_| malformed(what, format!("{name} is not UTF-8")))
            }
        }
    }

    pub fn require_text(&mut self, name: &str) -> Result<String> {
        let what = self.what;
        self.read_text(name)?.ok_or_else(|| malformed(what, format!("{name} is missing")))
    }
}

/// Resolves a relationship target against the part that refers to it:
/// `("word/document.xml", "media/a.png")` -> `word/media/a.png`.
pub fn resolve(base_part: &str, target: &str) -> String {
    if let Some(abs) = target.strip_prefix('/') {
        return abs.to_string();
    }
    let mut parts: Vec<&str> = base_part.split('/').collect();
    parts.pop();
    for seg in target.split('/') {
        match seg {
            "." | "" => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_relative_targets() {
        assert_eq!(resolve("word/document.xml", "media/image1.png"), "word/media/image1.png");
        assert_eq!(resolve("ppt/slides/slide1.xml", "../media/a.png"), "ppt/media/a.png");
        assert_eq!(resolve("OEBPS/content.opf", "text/ch1.xhtml"), "OEBPS/text/ch1.xhtml");
        assert_eq!(resolve("a/b.xml", "/x/y.png"), "x/y.png");
    }
}
