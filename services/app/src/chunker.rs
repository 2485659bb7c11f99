//! Markdown into overlapping chunks for retrieval, and text into search tokens. Sizes are
//! in characters, so Chinese and English chunk alike.

/// One chunk: its text and where it came from (character offsets into the document).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub content: String,
    pub start: usize,
    pub end: usize,
}

/// Splits after every marker, keeping the marker with the text before it.
fn segments<'t>(text: &'t str, markers: &[String]) -> Vec<&'t str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < text.len() {
        let hit = markers.iter().filter(|m| !m.is_empty()).find(|m| text[i..].starts_with(m.as_str()));
        match hit {
            Some(m) => {
                i += m.len();
                out.push(&text[start..i]);
                start = i;
            }
            None => i += text[i..].chars().next().map_or(1, char::len_utf8),
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

fn char_len(s: &str) -> usize {
    s.chars().count()
}

/// Chunks of at most `size` characters (plus the overlap carried from the previous
/// chunk), cut at the markers where possible and hard-cut where a piece has none.
pub fn chunk(text: &str, size: usize, overlap: usize, markers: &[String]) -> Vec<Chunk> {
    let size = size.max(1);
    let overlap = overlap.min(size.saturating_sub(1));
    let room = size - overlap;
    let mut pieces: Vec<(usize, String)> = Vec::new(); // (start offset, text)
    let mut current = String::new();
    let mut current_start = 0;
    let mut offset = 0;
    for seg in segments(text, markers) {
        let len = char_len(seg);
        if !current.is_empty() && char_len(&current) + len > room {
            pieces.push((current_start, std::mem::take(&mut current)));
        }
        if current.is_empty() {
            current_start = offset;
        }
        if len > room {
            // A piece without markers: cut it by characters.
            let chars: Vec<char> = seg.chars().collect();
            for (i, part) in chars.chunks(room).enumerate() {
                pieces.push((offset + i * room, part.iter().collect()));
            }
        } else {
            current.push_str(seg);
        }
        offset += len;
    }
    if !current.is_empty() {
        pieces.push((current_start, current));
    }
    let mut chunks: Vec<Chunk> = Vec::new();
    for (start, body) in pieces {
        let tail: String = match chunks.last() {
            Some(prev) if overlap > 0 => {
                let n = char_len(&prev.content);
                prev.content.chars().skip(n.saturating_sub(overlap)).collect()
            }
            _ => String::new(),
        };
        let content = format!("{tail}{body}");
        if content.trim().is_empty() {
            continue;
        }
        let end = start + char_len(&body);
        chunks.push(Chunk { start: start - char_len(&tail).min(start), end, content });
    }
    chunks
}

/// Search tokens: jieba's fine-grained cut (so a query for 数据 finds 数据库), lower-cased,
/// punctuation dropped, joined by spaces as the database's `simple` configuration expects.
pub fn search_tokens(jieba: &jieba_rs::Jieba, text: &str) -> Vec<String> {
    jieba
        .cut_for_search(text, true)
        .into_iter()
        .map(|w| w.word.trim().to_lowercase())
        .filter(|w| w.chars().any(char::is_alphanumeric))
        .collect()
}

/// Words too common to say anything about a passage: a question's keyword search leaves
/// them out (the index keeps them), so that "where is it" does not match every passage
/// with "is" in it, in English or Chinese.
const STOP_WORDS: &[&str] = &[
    "a",
    "an",
    "and",
    "are",
    "as",
    "at",
    "be",
    "by",
    "can",
    "did",
    "do",
    "does",
    "for",
    "from",
    "had",
    "has",
    "have",
    "how",
    "i",
    "in",
    "is",
    "it",
    "its",
    "me",
    "my",
    "of",
    "on",
    "or",
    "our",
    "that",
    "the",
    "their",
    "them",
    "there",
    "these",
    "they",
    "this",
    "to",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "who",
    "whom",
    "why",
    "will",
    "with",
    "you",
    "your",
    "的",
    "了",
    "在",
    "是",
    "和",
    "与",
    "或",
    "也",
    "就",
    "都",
    "而",
    "及",
    "着",
    "把",
    "被",
    "让",
    "给",
    "对",
    "从",
    "向",
    "吗",
    "呢",
    "吧",
    "啊",
    "么",
    "什么",
    "哪里",
    "哪儿",
    "怎么",
    "怎样",
    "如何",
    "为什么",
    "哪",
    "谁",
    "我",
    "你",
    "他",
    "她",
    "它",
    "我们",
    "你们",
    "他们",
    "这",
    "那",
    "这个",
    "那个",
    "有",
    "要",
    "会",
    "能",
    "可以",
    "一个",
];

/// A question's search terms: its tokens without the stop words, unless nothing else is left.
pub fn query_terms(jieba: &jieba_rs::Jieba, text: &str) -> Vec<String> {
    let tokens = search_tokens(jieba, text);
    let meaningful: Vec<String> = tokens.iter().filter(|t| !STOP_WORDS.contains(&t.as_str())).cloned().collect();
    if meaningful.is_empty() { tokens } else { meaningful }
}

/// A tsquery that matches any of the tokens, quoted so no token is read as an operator.
pub fn tsquery(tokens: &[String]) -> String {
    tokens
        .iter()
        .map(|t| t.chars().filter(|c| c.is_alphanumeric()).collect::<String>())
        .filter(|t| !t.is_empty())
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn markers() -> Vec<String> {
        ["\n\n", "\n", "。", ". "].map(String::from).to_vec()
    }

    #[test]
    fn questions_lose_their_stop_words_unless_nothing_else_is_left() {
        let jieba = jieba_rs::Jieba::new();
        assert_eq!(query_terms(&jieba, "Where is the restore drill?"), ["restore", "drill"]);
        assert_eq!(query_terms(&jieba, "备份在哪里"), ["备份"]);
        assert_eq!(query_terms(&jieba, "the"), ["the"]);
    }

    #[test]
    fn chunks_respect_size_markers_and_overlap() {
        let text = "第一句话。第二句话。第三句话。第四句话。";
        let chunks = chunk(text, 12, 2, &markers());
        assert!(chunks.len() >= 2, "{chunks:?}");
        for c in &chunks {
            assert!(char_len(&c.content) <= 12, "{c:?}");
        }
        assert_eq!(chunks[0].content, "第一句话。第二句话。");
        assert!(chunks[1].content.starts_with("话。"), "the overlap carries the previous tail: {:?}", chunks[1]);
        let joined: String = chunks.iter().map(|c| c.content.clone()).collect();
        for sentence in ["第一句话", "第二句话", "第三句话", "第四句话"] {
            assert!(joined.contains(sentence));
        }
    }

    #[test]
    fn text_without_markers_is_hard_cut() {
        let text = "a".repeat(25);
        let chunks = chunk(&text, 10, 0, &markers());
        assert_eq!(chunks.iter().map(|c| c.content.len()).collect::<Vec<_>>(), [10, 10, 5]);
        assert_eq!((chunks[2].start, chunks[2].end), (20, 25));
    }

    #[test]
    fn empty_text_has_no_chunks() {
        assert!(chunk("", 100, 10, &markers()).is_empty());
        assert!(chunk("\n\n\n", 100, 10, &markers()).is_empty());
    }

    #[test]
    fn tokens_for_chinese_and_english() {
        let jieba = jieba_rs::Jieba::new();
        let tokens = search_tokens(&jieba, "数据库备份, Restore Drills!");
        assert!(tokens.contains(&"数据库".to_string()) && tokens.contains(&"备份".to_string()), "{tokens:?}");
        assert!(tokens.contains(&"restore".to_string()) && !tokens.iter().any(|t| t == ","), "{tokens:?}");
        assert_eq!(tsquery(&["it's".into(), "a&b".into(), "!".into()]), "'its' | 'ab'");
    }
}
