//! The DocReader contract, wire-compatible with WeKnora's: messages, the server trait and
//! the client, generated from proto/docreader.proto.
//!
//! Architecture invariant: generated code and nothing else. The `.proto` file is the
//! contract shared with upstream's DocReader; changing a field number or name breaks
//! wire compatibility, so fields are only ever added.

tonic::include_proto!("docreader");
