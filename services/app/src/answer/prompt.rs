//! What the chat model is given: instructions in the question's language (Chinese or
//! English), the retrieved passages numbered `[1]`, `[2]`, … so that the answer can cite
//! them, recent turns of the session, and the question, all within a budget of tokens so a
//! long document never overflows the model's window. Without a model, the answer is
//! extractive: the best passages, each with its citation.

use crate::clients::llm::Message;
use crate::db::chunks::Hit;

/// One earlier question and its answer.
pub struct Turn {
    pub question: String,
    pub answer: String,
}

/// What the model is asked, and how many of the passages it was given (the first `cited`
/// hits: `[n]` is hit n-1).
pub struct Prompt {
    pub messages: Vec<Message>,
    pub cited: usize,
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F)
}

/// Whether the question is in Chinese: at least a third of its letters are Han characters.
pub fn is_chinese(text: &str) -> bool {
    let letters = text.chars().filter(|c| c.is_alphanumeric()).count();
    let han = text.chars().filter(|&c| is_cjk(c)).count();
    han > 0 && han * 3 >= letters
}

/// A cautious estimate of a text's tokens: one per Han character, one per four other
/// characters (real tokenizers give fewer for English, so the budget holds).
pub fn tokens(text: &str) -> usize {
    let han = text.chars().filter(|&c| is_cjk(c)).count();
    han + (text.chars().count() - han).div_ceil(4)
}

/// The first `budget` tokens' worth of `text`, cut at a character.
fn clip(text: &str, budget: usize) -> String {
    let mut used = 0;
    let mut out = String::new();
    for c in text.chars() {
        used += if is_cjk(c) { 4 } else { 1 };
        if used > budget * 4 {
            out.push('…');
            return out;
        }
        out.push(c);
    }
    out
}

pub const SYSTEM_EN: &str = "You answer questions using only the numbered passages below, taken from the user's documents. \
Cite the passages you use with their numbers in square brackets, like [1] or [2][3], right after the statement they \
support. If the passages do not contain the answer, say so plainly instead of guessing. Answer in the language of the \
question.";

pub const SYSTEM_ZH: &str = "你只根据下面带编号的段落回答问题，这些段落来自用户的文档。在所依据的陈述后用方括号标注段落编号，\
例如 [1] 或 [2][3]。如果段落中没有答案，请直接说明，不要猜测。用提问所用的语言（中文）回答。";

/// The passage as the model sees it: its number, its document's title, its text.
fn passage(n: usize, hit: &Hit, budget: usize) -> String {
    let title = if hit.knowledge_title.is_empty() { &hit.knowledge_filename } else { &hit.knowledge_title };
    format!("[{n}] ({title})\n{}", clip(&hit.content, budget))
}

/// The messages for `question` with `hits` (best first) and the session's earlier turns
/// (oldest first), within `budget` tokens of passages and history.
pub fn build(question: &str, hits: &[Hit], history: &[Turn], budget: usize) -> Prompt {
    let chinese = is_chinese(question);
    // History gets at most a third of the budget, most recent turns first.
    let mut history_budget = budget / 3;
    let mut kept: Vec<&Turn> = Vec::new();
    for turn in history.iter().rev() {
        let cost = tokens(&turn.question) + tokens(&turn.answer);
        if cost > history_budget {
            break;
        }
        history_budget -= cost;
        kept.push(turn);
    }
    kept.reverse();
    let mut left = budget - (budget / 3 - history_budget) - tokens(question).min(budget / 3);
    let mut passages = Vec::new();
    for (i, hit) in hits.iter().enumerate() {
        let text = passage(i + 1, hit, left.saturating_sub(16));
        let cost = tokens(&text);
        // The first passage is cut to fit; a later one that does not fit ends the list.
        if cost > left && !passages.is_empty() {
            break;
        }
        left = left.saturating_sub(cost);
        passages.push(text);
        if left < 32 {
            break;
        }
    }
    let cited = passages.len();
    let context = if passages.is_empty() {
        if chinese {
            "（没有找到相关段落。）".to_string()
        } else {
            "(No passage matched the question.)".to_string()
        }
    } else {
        passages.join("\n\n")
    };
    let system = format!("{}\n\n{context}", if chinese { SYSTEM_ZH } else { SYSTEM_EN });
    let mut messages = vec![Message { role: "system", content: system }];
    for turn in kept {
        messages.push(Message { role: "user", content: turn.question.clone() });
        messages.push(Message { role: "assistant", content: turn.answer.clone() });
    }
    messages.push(Message { role: "user", content: question.to_string() });
    Prompt { messages, cited }
}

/// How many passages an extractive answer quotes.
pub const EXTRACTIVE_PASSAGES: usize = 3;

/// The answer made without a model, in pieces as they are sent: a line saying what it is,
/// then the best passages (shortened), each followed by its citation.
pub fn extractive(question: &str, hits: &[Hit]) -> Vec<String> {
    let chinese = is_chinese(question);
    if hits.is_empty() {
        return vec![if chinese {
            "知识库中没有与问题相关的段落。".into()
        } else {
            "No passage in the knowledge base matches the question.".into()
        }];
    }
    let mut pieces = vec![if chinese {
        "未配置对话模型，以下是与问题最相关的段落：\n\n".to_string()
    } else {
        "No chat model is configured, so here are the passages that best match the question:\n\n".to_string()
    }];
    for (i, hit) in hits.iter().take(EXTRACTIVE_PASSAGES).enumerate() {
        let text: String = hit.content.split_whitespace().collect::<Vec<_>>().join(" ");
        pieces.push(format!("- {} [{}]\n", clip(&text, 70), i + 1));
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(content: &str) -> Hit {
        Hit {
            id: uuid::Uuid::new_v4(),
            content: content.into(),
            knowledge_id: uuid::Uuid::nil(),
            knowledge_base_id: None,
            chunk_index: 0,
            knowledge_title: "runbook.md".into(),
            knowledge_filename: "runbook.md".into(),
            start_at: 0,
            end_at: 0,
            seq: 0,
            knowledge_source: String::new(),
            image_info: String::new(),
            score: 1.0,
            matched: crate::db::chunks::Matched::Keyword,
            chunk_type: "text".into(),
        }
    }

    #[test]
    fn the_language_follows_the_question() {
        assert!(is_chinese("备份多久运行一次？"));
        assert!(is_chinese("Redis 的备份策略是什么"));
        assert!(!is_chinese("Who is 张三?"));
        assert!(!is_chinese("How often does the backup run?"));
        let zh = build("备份什么时候运行？", &[hit("备份在 02:00 运行")], &[], 1000);
        assert!(zh.messages[0].content.starts_with("你只根据"), "{}", zh.messages[0].content);
        let en = build("When does the backup run?", &[hit("The backup runs at 02:00")], &[], 1000);
        assert!(en.messages[0].content.contains("Cite the passages"));
    }

    #[test]
    fn passages_are_numbered_and_history_comes_before_the_question() {
        let hits = [hit("The backup runs at 02:00."), hit("Offsite copies are kept ninety days.")];
        let history = [Turn { question: "Who runs it?".into(), answer: "The ops team [1].".into() }];
        let p = build("When does it run?", &hits, &history, 1000);
        assert_eq!(p.cited, 2);
        let system = &p.messages[0].content;
        assert!(system.contains("[1] (runbook.md)\nThe backup runs at 02:00."), "{system}");
        assert!(system.contains("[2] (runbook.md)\nOffsite copies"), "{system}");
        let roles: Vec<&str> = p.messages.iter().map(|m| m.role).collect();
        assert_eq!(roles, ["system", "user", "assistant", "user"]);
        assert_eq!(p.messages[3].content, "When does it run?");
    }

    #[test]
    fn a_long_document_never_overflows_the_budget() {
        let long = "word ".repeat(20_000);
        let hits = [hit(&long), hit(&long), hit("short")];
        let history: Vec<Turn> = (0..50).map(|_| Turn { question: long.clone(), answer: long.clone() }).collect();
        let p = build("What is in it?", &hits, &history, 1000);
        let total: usize = p.messages.iter().map(|m| tokens(&m.content)).sum();
        assert!(total <= 1000 + tokens(SYSTEM_EN) + 16, "{total} tokens");
        assert_eq!(p.cited, 1, "the first passage is cut to fit, the others left out");
        assert_eq!(p.messages.len(), 2, "no turn of history fits");
    }

    #[test]
    fn extractive_answers_cite_the_best_passages() {
        let hits = [hit("A"), hit("B"), hit("C"), hit("D")];
        let pieces = extractive("What?", &hits);
        assert!(pieces[0].starts_with("No chat model is configured"));
        assert_eq!(pieces[1..], ["- A [1]\n", "- B [2]\n", "- C [3]\n"]);
        assert!(extractive("什么？", &[])[0].contains("没有"));
    }
}
