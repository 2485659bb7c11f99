//! Word (.docx) to markdown: headings from paragraph styles, bullet and numbered lists,
//! tables as markdown tables, and embedded images returned as `Image`s.

use std::collections::HashMap;

use super::archive::{Archive, resolve};
use super::markdown::{table, tidy};
use super::xml::{XmlEvent, attr, walk};
use super::{Document, Image, Limits, Result};

const WHAT: &str = "DOCX file";
const MAIN: &str = "word/document.xml";

/// Relationship id -> target, from a `.rels` part.
pub fn relationships(zip: &mut Archive<'_>, rels_part: &str, what: &str) -> Result<HashMap<String, String>> {
    let mut rels = HashMap::new();
    if let Some(xml) = zip.read_text(rels_part)? {
        walk(&xml, what, |e| {
            if let XmlEvent::Start { name: "Relationship", tag, .. } = e
                && let (Some(id), Some(target)) = (attr(tag, "Id"), attr(tag, "Target"))
            {
                rels.insert(id, target);
            }
            Ok(())
        })?;
    }
    Ok(rels)
}

pub fn mime_for(name: &str) -> &'static str {
    match name.rsplit('.').next().map(|e| e.to_ascii_lowercase()).as_deref() {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("bmp") => "image/bmp",
        Some("tif" | "tiff") => "image/tiff",
        Some("svg") => "image/svg+xml",
        Some("webp") => "image/webp",
        Some("emf") => "image/emf",
        Some("wmf") => "image/wmf",
        _ => "application/octet-stream",
    }
}

/// What paragraph styles imply: heading levels ("heading 2" -> 2, "Title" -> 1) and the
/// list numbering a style carries (Word's "List Bullet" and "List Number" styles).
#[derive(Default)]
struct Styles {
    headings: HashMap<String, usize>,
    numbering: HashMap<String, String>,
}

fn styles(xml: Option<String>) -> Result<Styles> {
    let mut styles = Styles::default();
    let Some(xml) = xml else { return Ok(styles) };
    let mut current: Option<String> = None;
    walk(&xml, WHAT, |e| {
        match e {
            XmlEvent::Start { name: "style", tag, .. } => current = attr(tag, "styleId"),
            XmlEvent::Start { name: "name", tag, .. } => {
                if let (Some(id), Some(name)) = (&current, attr(tag, "val")) {
                    let name = name.to_ascii_lowercase();
                    let level = if name == "title" {
                        Some(1)
                    } else {
                        name.strip_prefix("heading ").and_then(|n| n.trim().parse::<usize>().ok())
                    };
                    if let Some(level) = level.filter(|l| (1..=6).contains(l)) {
                        styles.headings.insert(id.clone(), level);
                    }
                }
            }
            XmlEvent::Start { name: "numId", tag, .. } => {
                if let (Some(id), Some(num)) = (&current, attr(tag, "val")) {
                    styles.numbering.insert(id.clone(), num);
                }
            }
            XmlEvent::End { name: "style" } => current = None,
            _ => {}
        }
        Ok(())
    })?;
    Ok(styles)
}

/// numId -> whether level 0 is numbered (not bullets), from numbering.xml.
fn numbered_lists(xml: Option<String>) -> Result<HashMap<String, bool>> {
    let Some(xml) = xml else { return Ok(HashMap::new()) };
    let mut abstract_fmt: HashMap<String, bool> = HashMap::new();
    let mut num_to_abstract: HashMap<String, String> = HashMap::new();
    let (mut abs, mut lvl, mut num): (Option<String>, Option<String>, Option<String>) = (None, None, None);
    walk(&xml, WHAT, |e| {
        match e {
            XmlEvent::Start { name: "abstractNum", tag, .. } => abs = attr(tag, "abstractNumId"),
            XmlEvent::Start { name: "lvl", tag, .. } => lvl = attr(tag, "ilvl"),
            XmlEvent::Start { name: "numFmt", tag, .. } => {
                if let (Some(a), Some("0"), Some(fmt)) = (&abs, lvl.as_deref(), attr(tag, "val")) {
                    abstract_fmt.insert(a.clone(), fmt != "bullet" && fmt != "none");
                }
            }
            XmlEvent::Start { name: "num", tag, .. } => num = attr(tag, "numId"),
            XmlEvent::Start { name: "abstractNumId", tag, .. } => {
                if let (Some(n), Some(a)) = (&num, attr(tag, "val")) {
                    num_to_abstract.insert(n.clone(), a);
                }
            }
            XmlEvent::End { name: "abstractNum" } => abs = None,
            XmlEvent::End { name: "num" } => num = None,
            _ => {}
        }
        Ok(())
    })?;
    Ok(num_to_abstract.into_iter().map(|(n, a)| (n, abstract_fmt.get(&a).copied().unwrap_or(false))).collect())
}

#[derive(Default)]
struct Para {
    text: String,
    style: Option<String>,
    num_id: Option<String>,
    level: usize,
}

#[derive(Default)]
struct Table {
    rows: Vec<Vec<String>>,
    row: Vec<String>,
    cell: Option<String>,
}

pub fn parse(bytes: &[u8], limits: &Limits) -> Result<Document> {
    let mut zip = Archive::open(bytes, WHAT, limits)?;
    let body = zip.require_text(MAIN)?;
    let rels = relationships(&mut zip, "word/_rels/document.xml.rels", WHAT)?;
    let styles = styles(zip.read_text("word/styles.xml")?)?;
    let numbered = numbered_lists(zip.read_text("word/numbering.xml")?)?;

    let mut out = String::new();
    let mut images: Vec<Image> = Vec::new();
    let mut image_by_rel: HashMap<String, String> = HashMap::new();
    let mut para: Option<Para> = None;
    let mut tables: Vec<Table> = Vec::new();
    let mut in_text = false;
    let mut counters: HashMap<(String, usize), usize> = HashMap::new();
    let mut last_list = false;
    let mut pending_images: Vec<String> = Vec::new();

    walk(&body, WHAT, |e| {
        match e {
            XmlEvent::Start { name: "p", .. } => para = Some(Para::default()),
            XmlEvent::Start { name: "pStyle", tag, .. } => {
                if let Some(p) = para.as_mut() {
                    p.style = attr(tag, "val");
                }
            }
            XmlEvent::Start { name: "ilvl", tag, .. } => {
                if let Some(p) = para.as_mut() {
                    p.level = attr(tag, "val").and_then(|v| v.parse().ok()).unwrap_or(0).min(8);
                }
            }
            XmlEvent::Start { name: "numId", tag, .. } => {
                if let Some(p) = para.as_mut() {
                    p.num_id = attr(tag, "val").filter(|v| v != "0");
                }
            }
            XmlEvent::Start { name: "t", empty: false, .. } => in_text = true,
            XmlEvent::End { name: "t" } => in_text = false,
            XmlEvent::Text(t) if in_text => {
                if let Some(p) = para.as_mut() {
                    p.text.push_str(t);
                }
            }
            XmlEvent::Start { name: "tab", .. } => {
                if let Some(p) = para.as_mut() {
                    p.text.push('\t');
                }
            }
            XmlEvent::Start { name: "br" | "cr", .. } => {
                if let Some(p) = para.as_mut() {
                    p.text.push('\n');
                }
            }
            XmlEvent::Start { name: "blip" | "imagedata", tag, .. } => {
                let rel = attr(tag, "embed").or_else(|| attr(tag, "id"));
                if let Some(rel) = rel {
                    let reference = match image_by_rel.get(&rel) {
                        Some(r) => Some(r.clone()),
                        None => match rels.get(&rel) {
                            Some(target) => {
                                let path = resolve(MAIN, target);
                                match zip.read(&path)? {
                                    Some(data) => {
                                        let base = path.rsplit('/').next().unwrap_or(&path).to_string();
                                        let filename = if images.iter().any(|i| i.filename == base) {
                                            format!("{}_{base}", images.len() + 1)
                                        } else {
                                            base
                                        };
                                        let original_ref = format!("images/{filename}");
                                        images.push(Image {
                                            mime_type: mime_for(&filename).into(),
                                            filename,
                                            original_ref: original_ref.clone(),
                                            data,
                                        });
                                        image_by_rel.insert(rel, original_ref.clone());
                                        Some(original_ref)
                                    }
                                    None => None,
                                }
                            }
                            None => None,
                        },
                    };
                    if let Some(r) = reference {
                        match para.as_mut() {
                            Some(p) => p.text.push_str(&format!("![]({r})")),
                            None => pending_images.push(r),
                        }
                    }
                }
            }
            XmlEvent::End { name: "p" } => {
                let Some(p) = para.take() else { return Ok(()) };
                let text = p.text.trim().to_string();
                if let Some(cell) = tables.last_mut().and_then(|t| t.cell.as_mut()) {
                    if !text.is_empty() {
                        if !cell.is_empty() {
                            cell.push(' ');
                        }
                        cell.push_str(&text);
                    }
                    return Ok(());
                }
                if text.is_empty() {
                    return Ok(());
                }
                let heading = p.style.as_ref().and_then(|s| styles.headings.get(s)).copied();
                let num_id =
                    p.num_id.clone().or_else(|| p.style.as_ref().and_then(|s| styles.numbering.get(s)).cloned());
                if let (None, Some(num)) = (heading, &num_id) {
                    let marker = if numbered.get(num).copied().unwrap_or(false) {
                        let n = counters.entry((num.clone(), p.level)).or_insert(0);
                        *n += 1;
                        format!("{n}. ")
                    } else {
                        "- ".into()
                    };
                    if !last_list {
                        out.push('\n');
                    }
                    out.push_str(&"  ".repeat(p.level));
                    out.push_str(&marker);
                    out.push_str(&text.replace('\n', " "));
                    out.push('\n');
                    last_list = true;
                    return Ok(());
                }
                last_list = false;
                out.push('\n');
                if let Some(level) = heading {
                    out.push_str(&"#".repeat(level));
                    out.push(' ');
                    out.push_str(&text.replace('\n', " "));
                } else {
                    out.push_str(&text);
                }
                out.push_str("\n\n");
            }
            XmlEvent::Start { name: "tbl", .. } => tables.push(Table::default()),
            XmlEvent::Start { name: "tr", .. } => {
                if let Some(t) = tables.last_mut() {
                    t.row.clear();
                }
            }
            XmlEvent::Start { name: "tc", .. } => {
                if let Some(t) = tables.last_mut() {
                    t.cell = Some(String::new());
                }
            }
            XmlEvent::End { name: "tc" } => {
                if let Some(t) = tables.last_mut() {
                    let cell = t.cell.take().unwrap_or_default();
                    t.row.push(cell);
                }
            }
            XmlEvent::End { name: "tr" } => {
                if let Some(t) = tables.last_mut() {
                    let row = std::mem::take(&mut t.row);
                    t.rows.push(row);
                }
            }
            XmlEvent::End { name: "tbl" } => {
                if let Some(t) = tables.pop() {
                    match tables.last_mut().and_then(|outer| outer.cell.as_mut()) {
                        // A table inside a cell is flattened into the cell's text.
                        Some(cell) => {
                            let flat: Vec<String> = t.rows.iter().map(|r| r.join(" ")).collect();
                            cell.push_str(&flat.join(" "));
                        }
                        None => {
                            last_list = false;
                            out.push('\n');
                            out.push_str(&table(&t.rows));
                            out.push('\n');
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    for r in pending_images {
        out.push_str(&format!("\n![]({r})\n"));
    }
    let mut doc = Document { markdown: tidy(&out), images, ..Default::default() };
    if let Some(core) = zip.read_text("docProps/core.xml")? {
        let mut in_title = false;
        let mut title = String::new();
        walk(&core, WHAT, |e| {
            match e {
                XmlEvent::Start { name: "title", .. } => in_title = true,
                XmlEvent::End { name: "title" } => in_title = false,
                XmlEvent::Text(t) if in_title => title.push_str(t),
                _ => {}
            }
            Ok(())
        })?;
        if !title.trim().is_empty() {
            doc.metadata.insert("title".into(), title.trim().into());
        }
    }
    doc.metadata.insert("image_count".into(), doc.images.len().to_string());
    Ok(doc)
}
