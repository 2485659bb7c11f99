//! A flat, streaming view of an XML part (OOXML, OPF, ...): start, end and text events
//! with namespace prefixes dropped and entity references resolved. Streaming means depth
//! costs nothing: no tree is built.

use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

use super::{Result, malformed};

pub enum XmlEvent<'e, 'a> {
    /// An opening tag; `empty` when it is also its own end (`<a/>`).
    Start {
        name: &'e str,
        tag: &'e BytesStart<'a>,
        empty: bool,
    },
    End {
        name: &'e str,
    },
    Text(&'e str),
}

/// Calls `f` for each event of `xml`; `what` names the document in errors.
pub fn walk<'a>(xml: &'a str, what: &str, mut f: impl FnMut(XmlEvent<'_, 'a>) -> Result<()>) -> Result<()> {
    let mut reader = Reader::from_str(xml);
    loop {
        let event = reader
            .read_event()
            .map_err(|e| malformed(what, format!("XML error at byte {}: {e}", reader.buffer_position())))?;
        match event {
            Event::Start(tag) => {
                f(XmlEvent::Start { name: local(tag.local_name().as_ref()), tag: &tag, empty: false })?
            }
            Event::Empty(tag) => {
                let name = local(tag.local_name().as_ref()).to_string();
                f(XmlEvent::Start { name: &name, tag: &tag, empty: true })?;
                f(XmlEvent::End { name: &name })?;
            }
            Event::End(tag) => f(XmlEvent::End { name: local(tag.local_name().as_ref()) })?,
            Event::Text(text) => f(XmlEvent::Text(&text.xml10_content()))?,
            Event::CData(data) => f(XmlEvent::Text(&data.into_inner()))?,
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => Some(c.to_string()),
                    _ => match r.xml10_content().as_ref() {
                        "amp" => Some("&".into()),
                        "lt" => Some("<".into()),
                        "gt" => Some(">".into()),
                        "quot" => Some("\"".into()),
                        "apos" => Some("'".into()),
                        "nbsp" => Some("\u{a0}".into()),
                        _ => None,
                    },
                };
                if let Some(text) = resolved {
                    f(XmlEvent::Text(&text))?;
                }
            }
            Event::Eof => return Ok(()),
            _ => {}
        }
    }
}

fn local(name: &str) -> &str {
    name.rsplit(':').next().unwrap_or(name)
}

/// An attribute's value by its local name (`r:embed` and `embed` both match "embed").
pub fn attr(tag: &BytesStart<'_>, name: &str) -> Option<String> {
    tag.attributes()
        .flatten()
        .find(|a| local(a.key.local_name().as_ref()) == name)
        .and_then(|a| a.normalized_value(XmlVersion::Implicit1_0).ok().map(|v| v.into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_references_and_drops_prefixes() {
        let mut seen = Vec::new();
        walk(r#"<w:p a:x="1"><w:t>A &amp; B &#x4E2D;</w:t><w:br/></w:p>"#, "test", |e| {
            seen.push(match e {
                XmlEvent::Start { name, tag, empty } => {
                    format!("<{name}{}{}>", attr(tag, "x").unwrap_or_default(), if empty { "/" } else { "" })
                }
                XmlEvent::End { name } => format!("</{name}>"),
                XmlEvent::Text(t) => t.to_string(),
            });
            Ok(())
        })
        .unwrap();
        assert_eq!(seen.concat(), "<p1><t>A & B 中</t><br/></br></p>");
    }

    #[test]
    fn mismatched_tags_are_malformed() {
        assert!(walk("<a><b></a>", "test", |_| Ok(())).is_err());
    }
}
