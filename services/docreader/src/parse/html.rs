//! HTML to markdown: headings, paragraphs, lists, tables, links, code. The document is
//! walked iteratively (open/close edges), never recursively, so nesting depth cannot
//! exhaust the stack.

use ego_tree::iter::Edge;
use scraper::{Html, Node};

use super::markdown::{table, tidy};
use super::text::decode;
use super::{Document, Limits, ParseError, Result};

pub fn parse(bytes: &[u8], limits: &Limits) -> Result<Document> {
    let (text, encoding) = decode(bytes)?;
    let (markdown, title) = html_to_markdown(&text, limits.max_depth)?;
    let mut doc = Document { markdown, ..Default::default() };
    doc.metadata.insert("encoding".into(), encoding.into());
    if let Some(title) = title {
        doc.metadata.insert("title".into(), title);
    }
    Ok(doc)
}

#[derive(Default)]
struct Table {
    rows: Vec<Vec<String>>,
    row: Vec<String>,
    cell: Option<String>,
}

#[derive(Default)]
struct Writer {
    out: String,
    tables: Vec<Table>,
    lists: Vec<Option<u32>>, // None: bullets; Some(n): next number
    links: Vec<bool>,
    link_targets: Vec<String>,
    skip: usize,
    pre: usize,
    title: Option<String>,
    in_title: bool,
}

impl Writer {
    fn sink(&mut self) -> &mut String {
        match self.tables.last_mut().and_then(|t| t.cell.as_mut()) {
            Some(cell) => cell,
            None => &mut self.out,
        }
    }

    fn in_cell(&self) -> bool {
        self.tables.last().is_some_and(|t| t.cell.is_some())
    }

    fn block(&mut self) {
        if self.in_cell() {
            let s = self.sink();
            if !s.is_empty() && !s.ends_with(' ') {
                s.push(' ');
            }
        } else if !self.out.is_empty() && !self.out.ends_with("\n\n") {
            self.out.push_str(if self.out.ends_with('\n') { "\n" } else { "\n\n" });
        }
    }

    fn push(&mut self, s: &str) {
        self.sink().push_str(s);
    }

    fn text(&mut self, raw: &str) {
        if self.in_title {
            self.title.get_or_insert_with(String::new).push_str(raw);
            return;
        }
        if self.skip > 0 {
            return;
        }
        if self.pre > 0 {
            self.push(raw);
            return;
        }
        let starts_ws = raw.starts_with(char::is_whitespace);
        let ends_ws = raw.ends_with(char::is_whitespace);
        let words: Vec<&str> = raw.split_whitespace().collect();
        let sink = self.sink();
        if words.is_empty() {
            if !raw.is_empty() && !sink.is_empty() && !sink.ends_with([' ', '\n']) {
                sink.push(' ');
            }
            return;
        }
        if starts_ws && !sink.is_empty() && !sink.ends_with([' ', '\n']) {
            sink.push(' ');
        }
        sink.push_str(&words.join(" "));
        if ends_ws {
            sink.push(' ');
        }
    }

    fn open(&mut self, name: &str, attr: impl Fn(&str) -> Option<String>) {
        if matches!(name, "script" | "style" | "noscript" | "template" | "head" | "svg" | "iframe" | "object") {
            self.skip += 1;
        }
        if name == "title" {
            self.in_title = true;
        }
        if self.skip > 0 {
            return;
        }
        match name {
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                self.block();
                if !self.in_cell() {
                    let level = name[1..].parse::<usize>().unwrap_or(1);
                    self.push(&format!("{} ", "#".repeat(level)));
                }
            }
            "p" | "div" | "section" | "article" | "header" | "footer" | "main" | "aside" | "nav" | "figure"
            | "blockquote" | "dl" | "dt" | "dd" | "address" => self.block(),
            "br" => {
                if self.in_cell() {
                    self.push(" ");
                } else {
                    self.push("\n");
                }
            }
            "hr" => {
                self.block();
                self.push("---");
                self.block();
            }
            "ul" | "ol" => {
                if self.lists.is_empty() {
                    self.block();
                }
                self.lists.push((name == "ol").then_some(1));
            }
            "li" => {
                if self.in_cell() {
                    self.push(" ");
                    return;
                }
                let depth = self.lists.len().saturating_sub(1);
                let marker = match self.lists.last_mut() {
                    Some(Some(n)) => {
                        *n += 1;
                        format!("{}. ", *n - 1)
                    }
                    _ => "- ".to_string(),
                };
                if !self.out.is_empty() && !self.out.ends_with('\n') {
                    self.out.push('\n');
                }
                self.out.push_str(&"  ".repeat(depth));
                self.out.push_str(&marker);
            }
            "pre" => {
                self.block();
                self.push("```\n");
                self.pre += 1;
            }
            "code" if self.pre == 0 => self.push("`"),
            "strong" | "b" => self.push("**"),
            "em" | "i" => self.push("*"),
            "a" => {
                let href =
                    attr("href").filter(|h| !h.is_empty() && !h.starts_with('#') && !h.starts_with("javascript:"));
                if href.is_some() {
                    self.push("[");
                }
                self.links.push(href.is_some());
                if let Some(h) = href {
                    // Remember the target in the link stack's text: written on close.
                    self.push_link_target(h);
                }
            }
            "img" => {
                if let Some(src) = attr("src").filter(|s| !s.starts_with("data:")) {
                    let alt = attr("alt").unwrap_or_default();
                    self.push(&format!("![{}]({src})", alt.trim()));
                }
            }
            "table" => {
                self.block();
                self.tables.push(Table::default());
            }
            "tr" => {
                if let Some(t) = self.tables.last_mut() {
                    t.row.clear();
                }
            }
            "td" | "th" => {
                if let Some(t) = self.tables.last_mut() {
                    t.cell = Some(String::new());
                }
            }
            _ => {}
        }
    }

    fn push_link_target(&mut self, href: String) {
        self.link_targets.push(href);
    }

    fn close(&mut self, name: &str) {
        if name == "title" {
            self.in_title = false;
        }
        if matches!(name, "script" | "style" | "noscript" | "template" | "head" | "svg" | "iframe" | "object") {
            self.skip = self.skip.saturating_sub(1);
            return;
        }
        if self.skip > 0 {
            return;
        }
        match name {
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "p" | "div" | "section" | "article" | "header" | "footer"
            | "main" | "aside" | "nav" | "figure" | "blockquote" | "dl" | "dt" | "dd" | "address" => self.block(),
            "ul" | "ol" => {
                self.lists.pop();
                if self.lists.is_empty() {
                    self.block();
                }
            }
            "pre" => {
                self.pre = self.pre.saturating_sub(1);
                if !self.sink().ends_with('\n') {
                    self.push("\n");
                }
                self.push("```");
                self.block();
            }
            "code" if self.pre == 0 => self.push("`"),
            "strong" | "b" => self.push("**"),
            "em" | "i" => self.push("*"),
            "a" if self.links.pop() == Some(true) => {
                let href = self.link_targets.pop().unwrap_or_default();
                self.push(&format!("]({href})"));
            }
            "td" | "th" => {
                if let Some(t) = self.tables.last_mut() {
                    let cell = t.cell.take().unwrap_or_default();
                    t.row.push(cell.trim().to_string());
                }
            }
            "tr" => {
                if let Some(t) = self.tables.last_mut() {
                    if t.cell.is_some() {
                        let cell = t.cell.take().unwrap_or_default();
                        t.row.push(cell.trim().to_string());
                    }
                    let row = std::mem::take(&mut t.row);
                    if !row.is_empty() {
                        t.rows.push(row);
                    }
                }
            }
            "table" => {
                if let Some(t) = self.tables.pop() {
                    let rendered = table(&t.rows);
                    if self.in_cell() {
                        // A table inside a cell is flattened into the cell's text.
                        let flat: Vec<String> = t.rows.iter().map(|r| r.join(" ")).collect();
                        self.push(&flat.join(" "));
                    } else {
                        self.block();
                        self.push(&rendered);
                        self.block();
                    }
                }
            }
            _ => {}
        }
    }
}

/// Elements whose end tag may be left out, and elements that have none: neither adds
/// lasting depth when unclosed.
const NO_DEPTH: &[&str] = &[
    "p", "li", "dt", "dd", "tr", "td", "th", "option", "optgroup", "thead", "tbody", "tfoot", "colgroup", "rb", "rt",
    "rp", "br", "img", "hr", "input", "meta", "link", "area", "base", "col", "embed", "param", "source", "track",
    "wbr", "html", "head", "body",
];

/// The deepest element nesting, estimated by a single pass over the tags. HTML parsing
/// costs grow with the square of the depth, so very deep documents are refused up front.
pub fn max_nesting(html: &str) -> usize {
    let bytes = html.as_bytes();
    let (mut depth, mut max, mut i) = (0usize, 0usize, 0usize);
    while let Some(off) = bytes[i..].iter().position(|b| *b == b'<') {
        i += off + 1;
        if bytes[i..].starts_with(b"!--") {
            i = html[i..].find("-->").map_or(bytes.len(), |e| i + e + 3);
            continue;
        }
        let closing = bytes.get(i) == Some(&b'/');
        let start = i + usize::from(closing);
        let end = start + bytes[start..].iter().take_while(|b| b.is_ascii_alphanumeric() || **b == b'-').count();
        if end == start {
            continue;
        }
        let name = html[start..end].to_ascii_lowercase();
        let tag_end = bytes[end..].iter().position(|b| *b == b'>').map_or(bytes.len(), |p| end + p);
        let self_closing = tag_end > 0 && bytes.get(tag_end - 1) == Some(&b'/');
        if NO_DEPTH.contains(&name.as_str()) || self_closing {
            i = tag_end;
            continue;
        }
        if closing {
            depth = depth.saturating_sub(1);
        } else if name == "script" || name == "style" {
            let close = format!("</{name}");
            i = html[tag_end..].to_ascii_lowercase().find(&close).map_or(bytes.len(), |p| tag_end + p);
            continue;
        } else {
            depth += 1;
            max = max.max(depth);
        }
        i = tag_end;
    }
    max
}

/// Converts HTML text to markdown; returns it with the document's `<title>`, if any.
pub fn html_to_markdown(html: &str, max_depth: usize) -> Result<(String, Option<String>)> {
    let depth = max_nesting(html);
    if depth > max_depth {
        return Err(ParseError::Malformed(format!(
            "the HTML nests elements {depth} deep; the limit is {max_depth}: refused (malformed or hostile markup)"
        )));
    }
    let document = Html::parse_document(html);
    let mut w = Writer::default();
    for edge in document.tree.root().traverse() {
        match edge {
            Edge::Open(node) => match node.value() {
                Node::Element(el) => {
                    let attr = |name: &str| el.attr(name).map(str::to_string);
                    w.open(el.name(), attr);
                }
                Node::Text(t) => w.text(t),
                _ => {}
            },
            Edge::Close(node) => {
                if let Node::Element(el) = node.value() {
                    w.close(el.name());
                }
            }
        }
    }
    let title = w.title.map(|t| t.split_whitespace().collect::<Vec<_>>().join(" ")).filter(|t| !t.is_empty());
    Ok((tidy(&w.out), title))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_the_common_elements() {
        let html = r#"<html><head><title> 运维 手册 </title><style>p{}</style></head><body>
            <h1>部署</h1><p>Run <b>one</b> command, see <a href="https://x.test/doc">the docs</a>.</p>
            <ul><li>start</li><li>stop<ul><li>nested</li></ul></li></ul>
            <ol><li>first</li><li>second</li></ol>
            <table><tr><th>服务</th><th>端口</th></tr><tr><td>app</td><td>8080</td></tr></table>
            <pre>cargo xtask start
  --dev</pre><script>alert(1)</script></body></html>"#;
        let (md, title) = html_to_markdown(html, 256).unwrap();
        assert_eq!(title.as_deref(), Some("运维 手册"));
        assert!(md.contains("# 部署\n"), "{md}");
        assert!(md.contains("Run **one** command, see [the docs](https://x.test/doc)."), "{md}");
        assert!(md.contains("- start\n- stop\n  - nested"), "{md}");
        assert!(md.contains("1. first\n2. second"), "{md}");
        assert!(md.contains("| 服务 | 端口 |\n| --- | --- |\n| app | 8080 |"), "{md}");
        assert!(md.contains("```\ncargo xtask start\n  --dev\n```"), "{md}");
        assert!(!md.contains("alert") && !md.contains("p{}"), "{md}");
    }

    #[test]
    fn deep_nesting_is_refused_and_moderate_nesting_works() {
        let nested = |depth: usize| format!("{}deep{}", "<div>".repeat(depth), "</div>".repeat(depth));
        let err = html_to_markdown(&nested(100_000), 256).unwrap_err();
        assert!(err.to_string().contains("100000 deep"), "{err}");
        let (md, _) = html_to_markdown(&nested(200), 256).unwrap();
        assert_eq!(md.trim(), "deep");
    }

    #[test]
    fn unclosed_optional_tags_do_not_count_as_depth() {
        let html = format!("<ul>{}</ul><p>{}", "<li>x".repeat(5000), "<p>y".repeat(5000));
        assert!(max_nesting(&html) <= 2, "{}", max_nesting(&html));
        assert_eq!(max_nesting("<div><!-- <div><div> --><script>if (a<b) {}</script><br/></div>"), 1);
    }
}
