//! weknora-app: the HTTP API of weknora, its ingest workers and its one-off commands.
//!
//! # Module map
//!
//! Floors, top to bottom; a module uses only the floors below its own. `tests/layout.rs`
//! checks the module graph has no circle and guards the invariants below.
//!
//! - `api`: HTTP. One router per feature (`api/documents.rs`, `api/chat.rs`, …) composed
//!   in `api/mod.rs` by [`api::router`]. What the features share: `extract` (the caller,
//!   `OwnedKnowledgeBase`, folder paths, extractors that answer in upstream's error
//!   shape), `body` (the answer envelope, shared request pieces), `views` (rows as
//!   upstream's clients read them) and `error` ([`api::error::ApiError`] and every
//!   mapping of an error to HTTP).
//! - `answer`: a question answered in a session. `chat` orchestrates, `prompt` builds
//!   what the model reads, `replay` keeps an answer's frames in Redis for a client that
//!   reconnects. `ingest`: the queue, both halves: [`ingest::accept`] takes a document in,
//!   the workers parse, chunk and embed it. `transfers`: the worker that copies and moves
//!   documents between knowledge bases.
//! - `search`: `retrieval` (keyword and vector search, fused) and `cache` (the Redis
//!   search cache, and the Redis probe `/ready` uses).
//! - `models`: the tenants' own chat and embedding models, built into clients.
//! - `state`: [`state::AppState`], built by [`state::AppState::connect`], the one
//!   composition root: `main` serves it, tests build it in-process.
//! - `clients` (`docreader`, `embedding`, `llm`, `remote`), `storage` (files, through
//!   OpenDAL), `db` (every SQL statement).
//! - Leaves: `config`, `keys`, `crypt`, `metrics`, `answers` (the answers streaming now),
//!   `chunker` (chunks and search terms, for ingest and retrieval alike).
//!
//! # Architecture invariants
//!
//! - Only `api` knows HTTP: no module below it names `ApiError`, axum or a status code.
//!   Lower layers return their own errors (`StoreError`, `SearchError`, `IntakeError`,
//!   …) and `api/error.rs` maps each, so every status and upstream code is chosen there.
//! - No api feature imports another: what two features share lives in `extract`, `body`,
//!   `views` or below the HTTP layer.
//! - Handlers write no SQL and send no Redis commands: SQL lives in `db/`, Redis commands
//!   in `search::cache` and `answer::replay`. (Handlers still read and delete stored
//!   files through `state.storage`.)
//! - A document is stored before it is recorded, and recorded with its job in one
//!   transaction (`ingest::accept`); a job's outcome is written only under its lease.
//! - `db/` depends on nothing above it (`keys` aside).

pub mod answer;
pub mod answers;
pub mod api;
pub mod chunker;
pub mod clients;
pub mod config;
pub mod crypt;
pub mod db;
pub mod ingest;
pub mod keys;
pub mod metrics;
pub mod models;
pub mod search;
pub mod state;
pub mod storage;
pub mod transfers;

pub use db::migrations::MIGRATOR;
