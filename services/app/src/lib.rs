//! weknora-app: the HTTP API of weknora.
//!
//! Layers, each depending only on those below it: `api` (HTTP: one router per feature) ->
//! `ingest` (the background workers) and `cache` -> `state` -> `db` (every SQL statement),
//! `docreader`, `storage`, `chunker`, `metrics`, `config`.

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
