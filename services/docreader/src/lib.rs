//! weknora-docreader: documents (bytes or URLs) to markdown over gRPC, wire-compatible
//! with WeKnora's DocReader service.
//!
//! Architecture invariants:
//! - `parse` is pure: bytes and `Limits` in, markdown or a `ParseError` out. It does no I/O,
//!   spawns nothing, and knows nothing of gRPC; every parser is synchronous code over a byte
//!   slice, so it can be fuzzed (`fuzz/`) and run on a blocking thread.
//! - `fetch` is the only module that opens network connections, and every connection it
//!   opens passes the private-address check, redirects included.
//! - `service` is the only module that knows the wire contract (`weknora-docreader-proto`);
//!   it owns concurrency, deadlines and panic containment, so no document can take the
//!   server down.
//! - Nothing here reads the app's database, storage or configuration: the app calls the
//!   docreader, never the reverse.

pub mod config;
pub mod fetch;
pub mod metrics;
pub mod parse;
pub mod service;

/// The wire contract (crates/docreader-proto).
pub use weknora_docreader_proto as proto;
