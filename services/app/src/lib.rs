//! weknora-app: the HTTP API of weknora.

pub mod auth;
pub mod cache;
pub mod chunker;
pub mod config;
pub mod ingest;
pub mod knowledge;
pub mod knowledge_bases;
pub mod metrics;
pub mod server;
pub mod storage;

/// The schema, embedded: AUTO_MIGRATE applies it at start.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");
