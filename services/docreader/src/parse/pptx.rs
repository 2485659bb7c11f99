//! PowerPoint (.pptx) to markdown: one section per slide, in presentation order, with
//! the slide's text paragraphs.

use super::Limits;
use super::archive::{Archive, resolve};
use super::docx::relationships;
use super::markdown::tidy;
use super::xml::{XmlEvent, attr, walk};
use super::{Document, Result, malformed};

const WHAT: &str = "PPTX file";

/// Slide parts in presentation order (presentation.xml's slide list), falling back to
/// the numeric order of ppt/slides/slideN.xml.
fn slide_parts(zip: &mut Archive<'_>) -> Result<Vec<String>> {
    let rels = relationships(zip, "ppt/_rels/presentation.xml.rels", WHAT)?;
    let mut ordered = Vec::new();
    if let Some(xml) = zip.read_text("ppt/presentation.xml")? {
        walk(&xml, WHAT, |e| {
            if let XmlEvent::Start { name: "sldId", tag, .. } = e
                && let Some(target) = attr(tag, "id").and_then(|id| rels.get(&id))
            {
                ordered.push(resolve("ppt/presentation.xml", target));
            }
            Ok(())
        })?;
    }
    if ordered.is_empty() {
        let mut numbered: Vec<(u32, String)> = zip
            .names()
            .into_iter()
            .filter_map(|n| {
                let num = n.strip_prefix("ppt/slides/slide")?.strip_suffix(".xml")?.parse().ok()?;
                Some((num, n))
            })
            .collect();
        numbered.sort();
        ordered = numbered.into_iter().map(|(_, n)| n).collect();
    }
    Ok(ordered)
}

pub fn parse(bytes: &[u8], limits: &Limits) -> Result<Document> {
    let mut zip = Archive::open(bytes, WHAT, limits)?;
    let slides = slide_parts(&mut zip)?;
    if slides.is_empty() && zip.read("ppt/presentation.xml")?.is_none() {
        return Err(malformed(WHAT, "ppt/presentation.xml is missing"));
    }
    let mut out = String::new();
    for (i, part) in slides.iter().enumerate() {
        let Some(xml) = zip.read_text(part)? else { continue };
        out.push_str(&format!("\n## Slide {}\n\n", i + 1));
        let mut paragraph = String::new();
        let mut in_text = false;
        walk(&xml, WHAT, |e| {
            match e {
                XmlEvent::Start { name: "t", empty: false, .. } => in_text = true,
                XmlEvent::End { name: "t" } => in_text = false,
                XmlEvent::Text(t) if in_text => paragraph.push_str(t),
                XmlEvent::Start { name: "br", .. } => paragraph.push(' '),
                XmlEvent::End { name: "p" } => {
                    let line = paragraph.trim();
                    if !line.is_empty() {
                        out.push_str(line);
                        out.push_str("\n\n");
                    }
                    paragraph.clear();
                }
                _ => {}
            }
            Ok(())
        })?;
    }
    let mut doc = Document { markdown: tidy(&out), ..Default::default() };
    doc.metadata.insert("slide_count".into(), slides.len().to_string());
    Ok(doc)
}
