//! weknora-docreader: documents (bytes or URLs) to markdown over gRPC, wire-compatible
//! with WeKnora's DocReader service.

pub mod config;
pub mod fetch;
pub mod metrics;
pub mod parse;
pub mod service;

/// The wire contract (crates/docreader-proto).
pub use weknora_docreader_proto as proto;
