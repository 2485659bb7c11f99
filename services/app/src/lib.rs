//! weknora-app: the HTTP API of weknora.
//!
//! Layers, each depending only on those below it: `api` (HTTP: one router per feature) ->
//! `ingest` (the background workers) and `cache` -> `state` -> `db` (every SQL statement),
//! `docreader`, `storage`, `chunker`, `metrics`, `config`.

pub mod answers;
pub mod api;
pub mod cache;
pub mod chat;
pub mod chunker;
pub mod config;
pub mod crypt;
pub mod db;
pub mod docreader;
pub mod embedding;
pub mod ingest;
pub mod keys;
pub mod llm;
pub mod metrics;
pub mod models;
pub mod prompt;
pub mod remote;
pub mod replay;
pub mod retrieval;
pub mod state;
pub mod storage;
pub mod transfers;

pub use db::migrations::MIGRATOR;
