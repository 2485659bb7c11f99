//! EPUB to markdown: the chapters in reading (spine) order, each converted from XHTML.

use std::collections::HashMap;

use super::archive::{Archive, resolve};
use super::html::html_to_markdown;
use super::markdown::tidy;
use super::xml::{XmlEvent, attr, walk};
use super::{Document, Limits, Result, malformed};

const WHAT: &str = "EPUB file";

pub fn parse(bytes: &[u8], limits: &Limits) -> Result<Document> {
    let mut zip = Archive::open(bytes, WHAT, limits)?;
    let container = zip.require_text("META-INF/container.xml")?;
    let mut opf_path = None;
    walk(&container, WHAT, |e| {
        if let XmlEvent::Start { name: "rootfile", tag, .. } = e
            && opf_path.is_none()
        {
            opf_path = attr(tag, "full-path");
        }
        Ok(())
    })?;
    let opf_path = opf_path.ok_or_else(|| malformed(WHAT, "META-INF/container.xml names no rootfile"))?;
    let opf = zip.require_text(&opf_path)?;

    let mut manifest: HashMap<String, String> = HashMap::new();
    let mut spine: Vec<String> = Vec::new();
    let mut title = String::new();
    let mut in_title = false;
    walk(&opf, WHAT, |e| {
        match e {
            XmlEvent::Start { name: "item", tag, .. } => {
                if let (Some(id), Some(href)) = (attr(tag, "id"), attr(tag, "href")) {
                    manifest.insert(id, href);
                }
            }
            XmlEvent::Start { name: "itemref", tag, .. } => spine.extend(attr(tag, "idref")),
            XmlEvent::Start { name: "title", .. } if title.is_empty() => in_title = true,
            XmlEvent::End { name: "title" } => in_title = false,
            XmlEvent::Text(t) if in_title => title.push_str(t),
            _ => {}
        }
        Ok(())
    })?;
    let mut out = String::new();
    for id in &spine {
        let Some(href) = manifest.get(id) else { continue };
        let path = resolve(&opf_path, href.split('#').next().unwrap_or(href));
        let Some(bytes) = zip.read(&path)? else { continue };
        let (markdown, _) = html_to_markdown(&String::from_utf8_lossy(&bytes), limits.max_depth)?;
        out.push_str(&markdown);
        out.push_str("\n\n");
    }
    let mut doc = Document { markdown: tidy(&out), ..Default::default() };
    if !title.trim().is_empty() {
        doc.metadata.insert("title".into(), title.trim().into());
    }
    doc.metadata.insert("chapter_count".into(), spine.len().to_string());
    Ok(doc)
}
