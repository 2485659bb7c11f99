//! Answering a question in a session: `chat` orchestrates (retrieval, the prompt, the
//! model, the stored messages), `prompt` builds what the model reads, and `replay` keeps
//! an answer's frames in Redis for a client that reconnects. (The registry of answers
//! streaming now, `crate::answers`, is a leaf that the state holds.)

pub mod chat;
pub mod prompt;
pub mod replay;
