//! Answers: which model answers a question, and the streaming of one answer (admitted
//! among the running ones, `answers`) as upstream's frames, in upstream's order:
//! `agent_query` (the session and the answer's message id), `references`, `session_title`
//! when the question named the session, the answer piece by piece, then a frame that ends
//! it (`answer` with `done`, then `complete`) or says what failed (`error`). However an
//! answer ends, what was said is stored with how it ended; a stopped answer closes the
//! connection to the model. An answer outlives its client, as upstream's do: its frames
//! are kept (`replay`) for a client that reconnects (continue-stream) to replay and follow.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::timeout_at;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::answer::prompt::{self, Turn};
use crate::answer::replay;
use crate::answers::{Refused, Running};
use crate::clients::llm::{ChatModel, LlmError, Message};
use crate::db;
use crate::db::chunks::Hit;
use crate::models::ModelError;
use crate::search::retrieval::SearchError;
use crate::state::{AppState, SharedState};

/// One server-sent event of an answer, in upstream's shape.
#[derive(Serialize, Debug)]
pub struct Frame {
    pub id: String,
    pub response_type: &'static str,
    pub content: String,
    pub done: bool,
    pub knowledge_references: Option<Vec<Hit>>,
    /// On `agent_query` only, as upstream sends them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assistant_message_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// What answers a question.
pub enum Answerer {
    Model(ChatModel),
    /// No chat model: the best passages, cited.
    Extractive,
}

impl Answerer {
    pub fn kind(&self) -> &'static str {
        match self {
            Answerer::Model(_) => "model",
            Answerer::Extractive => "extractive",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Answerer::Model(m) => m.name(),
            Answerer::Extractive => "extractive",
        }
    }
}

/// Who answers: the model the request names, else the first of the knowledge bases' chat
/// models, else the built-in model, else the extractive answer.
pub async fn choose(
    state: &AppState,
    tenant: Uuid,
    requested: Option<Uuid>,
    knowledge_bases: &[Uuid],
) -> Result<Answerer, ModelError> {
    let chosen = match requested {
        Some(id) => Some(id),
        None => {
            db::knowledge_bases::chat_model(&state.db, tenant, knowledge_bases).await.map_err(ModelError::Database)?
        }
    };
    if let Some(id) = chosen {
        return Ok(Answerer::Model(crate::models::chat(state, tenant, id).await?));
    }
    Ok(match &state.chat_model {
        Some(m) => Answerer::Model(m.clone()),
        None => Answerer::Extractive,
    })
}

/// The whole of `model`'s answer to `messages`, within `secs`; what failed, as a sentence.
async fn ask_whole(model: &ChatModel, messages: &[Message], secs: u64) -> Result<String, String> {
    let asked = async {
        let mut answer = model.ask(messages).await?;
        let mut text = String::new();
        while let Some(piece) = answer.next().await? {
            text.push_str(&piece);
        }
        Ok::<_, LlmError>(text)
    };
    match tokio::time::timeout(Duration::from_secs(secs), asked).await {
        Ok(Ok(text)) => Ok(text),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("the chat model `{}` did not answer within {secs} s", model.name())),
    }
}

/// A short title for a conversation that begins with `question`: the built-in chat model's
/// (within 15 s), else the question cut to 60 characters. Never fails: a title is a nicety.
pub async fn generate_title(state: &AppState, question: &str) -> String {
    let fallback = db::sessions::title_of(question);
    let Some(model) = &state.chat_model else { return fallback };
    let messages = [
        Message {
            role: "system",
            content: "Give a title of at most eight words for a conversation that begins with the user's question, \
                      in the question's language. Answer with the title only, without quotes."
                .into(),
        },
        Message { role: "user", content: question.chars().take(2000).collect() },
    ];
    match ask_whole(model, &messages, 15).await {
        Ok(text) => {
            let title = db::sessions::title_of(text.trim().trim_matches(['"', '\'', '“', '”', '《', '》']));
            if title.is_empty() { fallback } else { title }
        }
        Err(e) => {
            tracing::warn!(error = %e, "chat: the model could not title the session; its question does");
            fallback
        }
    }
}

/// How many follow-up questions are suggested after an answer.
pub const SUGGESTIONS: usize = 3;

/// Follow-up questions a reader of `answer` (to `question`) might ask next, by `model`
/// within 20 s, in the question's language: the lines of its answer, numbering and quotes
/// taken off, distinct, at most `SUGGESTIONS`.
pub async fn suggest(model: &ChatModel, question: &str, answer: &str) -> Result<Vec<String>, String> {
    let messages = [
        Message {
            role: "system",
            content: format!(
                "A reader asked a question and got the answer below. Suggest {SUGGESTIONS} short follow-up questions \
                 the reader might ask next, answerable from the same documents, in the language of the question. \
                 Answer with the questions only, one per line."
            ),
        },
        Message {
            role: "user",
            content: format!(
                "Question: {}\n\nAnswer: {}",
                question.chars().take(2000).collect::<String>(),
                answer.chars().take(4000).collect::<String>()
            ),
        },
    ];
    let text = ask_whole(model, &messages, 20).await?;
    Ok(suggestions_of(&text, question))
}

/// The questions of a model's list: one per line, numbering, bullets and quotes taken off.
fn suggestions_of(text: &str, question: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = without_marker(line.trim()).trim_matches(['"', '\'', '“', '”']).trim();
        if line.is_empty() || line.chars().count() > 200 || line == question.trim() || out.iter().any(|q| q == line) {
            continue;
        }
        out.push(line.to_string());
        if out.len() == SUGGESTIONS {
            break;
        }
    }
    out
}

/// A question, ready to be answered.
struct Asked {
    request_id: String,
    session: Uuid,
    message_id: Uuid,
    /// The session's new title, when this question gave it one.
    titled: Option<String>,
    references: Vec<Hit>,
    /// What the model is given (none for an extractive answer).
    messages: Vec<Message>,
    /// The pieces of an extractive answer.
    extractive: Vec<String>,
    answerer: Answerer,
    started: Instant,
}

/// How an answer ended.
enum Outcome {
    Completed,
    /// By `stop`.
    Stopped,
    Failed {
        code: &'static str,
        message: String,
    },
}

/// What an answer said so far.
#[derive(Default)]
struct Said {
    text: String,
    first_token: Option<Duration>,
}

fn millis(d: Duration) -> i32 {
    d.as_millis().min(i32::MAX as u128) as i32
}

/// Where an answer's frames go: to its client while it listens, and to the replay log.
struct Out {
    client: mpsc::Sender<String>,
    log: replay::Log,
}

impl Out {
    async fn send(&self, frame: Frame) {
        let json = serde_json::to_string(&frame).unwrap_or_else(|_| "{}".into());
        self.log.write(&json);
        // A client that went away misses the rest; the answer goes on for one that comes back.
        let _ = self.client.send(json).await;
    }
}

/// Streams the answer to `out` until it ends or is stopped; then stores it and gives back
/// its place (`running`, dropped at the end).
async fn answer(state: SharedState, running: Running, asked: Asked, out: Out) {
    let frame = |response_type, content: String, done, references, data| Frame {
        id: asked.request_id.clone(),
        response_type,
        content,
        done,
        knowledge_references: references,
        session_id: None,
        assistant_message_id: None,
        data,
    };
    let kind = asked.answerer.kind();
    let name = asked.answerer.name().to_string();
    let piece_data = Some(json!({ "answer_kind": kind, "model": name }));
    let ids = json!({ "session_id": asked.session, "assistant_message_id": asked.message_id });
    let query = Frame {
        session_id: Some(asked.session),
        assistant_message_id: Some(asked.message_id),
        ..frame("agent_query", String::new(), true, None, Some(ids))
    };
    out.send(query).await;
    out.send(frame("references", String::new(), false, Some(asked.references.clone()), None)).await;
    if let Some(title) = &asked.titled {
        let data = json!({ "session_id": asked.session, "title": title });
        out.send(frame("session_title", title.clone(), true, None, Some(data))).await;
    }

    let mut said = Said::default();
    let outcome = match &asked.answerer {
        Answerer::Extractive => {
            for piece in &asked.extractive {
                said.first_token.get_or_insert(asked.started.elapsed());
                said.text.push_str(piece);
                out.send(frame("answer", piece.clone(), false, None, piece_data.clone())).await;
            }
            Outcome::Completed
        }
        Answerer::Model(model) => {
            let send = |piece: String| out.send(frame("answer", piece, false, None, piece_data.clone()));
            stream_model(&state, model, &asked, &running.cancel, &mut said, send).await
        }
    };

    let elapsed = asked.started.elapsed();
    let (status, error) = match &outcome {
        Outcome::Completed => ("completed", None),
        Outcome::Stopped => ("stopped", None),
        Outcome::Failed { message, .. } => ("failed", Some(message.as_str())),
    };
    let ended = db::sessions::Ended {
        content: &said.text,
        status,
        error,
        first_token_ms: said.first_token.map(millis),
        duration_ms: millis(elapsed),
    };
    if let Err(e) = db::sessions::end_answer(&state.db, asked.message_id, &ended).await {
        tracing::error!(error = %e, request_id = %asked.request_id, "chat: the answer could not be stored");
    }
    crate::metrics::chat_answer(status, kind, said.first_token, elapsed);
    let last = match &outcome {
        Outcome::Failed { code, message } => {
            crate::metrics::chat_model_error(code);
            tracing::warn!(request_id = %asked.request_id, model = %name, code, error = %message, "chat: the answer failed");
            let data = json!({ "code": code, "message_id": asked.message_id, "status": status });
            frame("error", message.clone(), true, None, Some(data))
        }
        _ => {
            if let Outcome::Stopped = &outcome {
                tracing::info!(request_id = %asked.request_id, "chat: the answer was stopped");
            }
            let data = json!({
                "message_id": asked.message_id, "answer_kind": kind, "model": name, "status": status,
                "first_token_ms": ended.first_token_ms, "duration_ms": ended.duration_ms,
            });
            frame("answer", String::new(), true, None, Some(data))
        }
    };
    let failed = matches!(outcome, Outcome::Failed { .. });
    let mut complete = last.data.clone().unwrap_or_default();
    out.send(last).await;
    if !failed {
        complete["total_steps"] = json!(1);
        complete["total_duration_ms"] = json!(ended.duration_ms);
        out.send(frame("complete", String::new(), true, None, Some(complete))).await;
    }
    drop(running);
}

/// How often a streaming answer looks for a stop asked on another replica.
const STOP_POLL: Duration = Duration::from_secs(1);

/// The model's answer, piece by piece, until it ends, fails, times out or is stopped.
/// Returning drops the model's answer, which closes its connection.
async fn stream_model<F, S>(
    state: &AppState,
    model: &ChatModel,
    asked: &Asked,
    cancel: &CancellationToken,
    said: &mut Said,
    send: F,
) -> Outcome
where
    F: Fn(String) -> S,
    S: std::future::Future<Output = ()>,
{
    let c = &state.config.chat;
    let start = tokio::time::Instant::from_std(asked.started);
    let total = start + Duration::from_secs(c.total_timeout_secs);
    let first = (start + Duration::from_secs(c.first_token_timeout_secs)).min(total);
    let timed_out = |first_piece: bool| Outcome::Failed {
        code: "model_timeout",
        message: if first_piece {
            format!(
                "the chat model `{}` sent nothing within {} s (chat.first_token_timeout_secs): it may be overloaded \
                 or still loading; try again, or raise WEKNORA__CHAT__FIRST_TOKEN_TIMEOUT_SECS",
                model.name(),
                c.first_token_timeout_secs.min(c.total_timeout_secs)
            )
        } else {
            format!(
                "the chat model `{}` did not finish within {} s (chat.total_timeout_secs): the answer so far is kept; \
                 ask for less, or raise WEKNORA__CHAT__TOTAL_TIMEOUT_SECS",
                model.name(),
                c.total_timeout_secs
            )
        },
    };
    let failed = |e: LlmError| Outcome::Failed { code: e.code(), message: e.to_string() };
    let mut answer = tokio::select! {
        asked = timeout_at(first, model.ask(&asked.messages)) => match asked {
            Err(_) => return timed_out(true),
            Ok(Err(e)) => return failed(e),
            Ok(Ok(answer)) => answer,
        },
        _ = cancel.cancelled() => return Outcome::Stopped,
    };
    // A stop asked on another replica arrives through Redis.
    let mut poll = tokio::time::interval(STOP_POLL);
    loop {
        let waiting_first = said.first_token.is_none();
        let until = if waiting_first { first } else { total };
        tokio::select! {
            next = timeout_at(until, answer.next()) => match next {
                Err(_) => return timed_out(waiting_first),
                Ok(Err(e)) => return failed(e),
                Ok(Ok(None)) => return Outcome::Completed,
                Ok(Ok(Some(piece))) => {
                    said.first_token.get_or_insert(asked.started.elapsed());
                    said.text.push_str(&piece);
                    send(piece).await;
                }
            },
            _ = cancel.cancelled() => return Outcome::Stopped,
            _ = poll.tick() => if replay::stop_asked(state, asked.message_id).await {
                return Outcome::Stopped;
            },
        }
    }
}

/// The frames of an answer (JSON), as the HTTP layer reads them.
pub type Frames = mpsc::Receiver<String>;

/// A question to a session.
pub struct Question<'a> {
    pub tenant: Uuid,
    pub session: Uuid,
    pub request_id: String,
    pub query: &'a str,
    /// Empty: the session's knowledge base, else those of `knowledge_ids`.
    pub knowledge_bases: Vec<Uuid>,
    pub knowledge_ids: &'a [Uuid],
    pub model: Option<Uuid>,
}

#[derive(Debug)]
pub enum AskError {
    NoSession,
    NoKnowledgeBase,
    Model(ModelError),
    Refused(Refused),
    Search(SearchError),
    Database(sqlx::Error),
}

impl From<sqlx::Error> for AskError {
    fn from(e: sqlx::Error) -> AskError {
        AskError::Database(e)
    }
}

/// Starts answering `q`: finds the passages, records the question and the answer to
/// come, and streams the answer in the background. The frames arrive on the answer.
pub async fn ask(state: &SharedState, q: Question<'_>) -> Result<Frames, AskError> {
    let started = Instant::now();
    let session = db::sessions::get(&state.db, q.tenant, q.session).await?.ok_or(AskError::NoSession)?;
    let mut knowledge_bases = q.knowledge_bases;
    if knowledge_bases.is_empty() {
        knowledge_bases.extend(session.knowledge_base_id);
    }
    if knowledge_bases.is_empty() {
        // Upstream's sessions hold no knowledge base: documents named alone say where to look.
        knowledge_bases = db::documents::knowledge_bases_of(&state.db, q.tenant, q.knowledge_ids).await?;
    }
    if knowledge_bases.is_empty() {
        return Err(AskError::NoKnowledgeBase);
    }
    let answerer = choose(state, q.tenant, q.model, &knowledge_bases).await.map_err(AskError::Model)?;
    let limit = state.config.chat.max_concurrent_per_tenant as usize;
    let running = state.answers.admit(q.tenant, q.session, limit).map_err(AskError::Refused)?;

    let question = crate::search::retrieval::Question {
        tenant: q.tenant,
        knowledge_bases: &knowledge_bases,
        knowledge_ids: q.knowledge_ids,
        query: q.query,
        top_k: state.config.retrieval.top_k as usize,
        off: crate::search::retrieval::Off::default(),
    };
    let hits = match crate::search::retrieval::search(state, &question).await {
        Ok(found) => found.hits,
        // Nothing to search for (only stop words): the model still answers, with no passage.
        Err(SearchError::NoWords) => Vec::new(),
        Err(e) => return Err(AskError::Search(e)),
    };
    let (messages, extractive, references) = match &answerer {
        Answerer::Model(_) => {
            let turns = state.config.chat.history_turns as i64;
            let history: Vec<Turn> = db::sessions::history(&state.db, q.session, turns)
                .await?
                .into_iter()
                .map(|(question, answer)| Turn { question, answer })
                .collect();
            let prompt = prompt::build(q.query, &hits, &history, state.config.chat.context_tokens as usize);
            (prompt.messages, Vec::new(), hits[..prompt.cited].to_vec())
        }
        Answerer::Extractive => {
            let cited = hits.len().min(prompt::EXTRACTIVE_PASSAGES);
            (Vec::new(), prompt::extractive(q.query, &hits), hits[..cited].to_vec())
        }
    };
    let begun = db::sessions::Begun {
        tenant: q.tenant,
        session: q.session,
        request_id: &q.request_id,
        question: q.query,
        references: &references,
        model: answerer.name(),
        kind: answerer.kind(),
    };
    let (message_id, titled) = db::sessions::begin_answer(&state.db, &begun).await?;
    let asked = Asked {
        request_id: q.request_id,
        session: q.session,
        message_id,
        titled,
        references,
        messages,
        extractive,
        answerer,
        started,
    };
    let (client, rx) = mpsc::channel(64);
    let out = Out { client, log: replay::Log::open(state, message_id) };
    tokio::spawn(answer(state.clone(), running, asked, out));
    Ok(rx)
}

/// A list item without its bullet or number (`- `, `1. `, `2) `, `3、`).
fn without_marker(line: &str) -> &str {
    let line = line.trim_start_matches(['-', '*', '•', '·']).trim_start();
    let digits = line.len() - line.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    match line[digits..].strip_prefix(['.', ')', '、', '．']) {
        Some(rest) if digits > 0 => rest.trim_start(),
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_are_the_lines_of_the_list_without_numbers_bullets_quotes_or_repeats() {
        let text = "1. How long are copies kept?\n\n2) “Who runs the restore drill?”\n- How long are copies kept?\n\
                    * When does the nightly backup run?\n• 备份保存在哪里？\nA fifth one";
        assert_eq!(
            suggestions_of(text, "When does the nightly backup run?"),
            ["How long are copies kept?", "Who runs the restore drill?", "备份保存在哪里？"]
        );
        assert!(suggestions_of("\n  \n", "q").is_empty());
        assert_eq!(
            suggestions_of("3、2024 年的备份在哪里？", "q"),
            ["2024 年的备份在哪里？"],
            "a number that begins the question stays"
        );
    }
}
