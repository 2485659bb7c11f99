//! weknora-docreader: documents (bytes or URLs) to markdown over gRPC, wire-compatible
//! with WeKnora's DocReader service.

pub mod config;
pub mod fetch;
pub mod parse;
pub mod service;

/// Generated from proto/docreader.proto.
pub mod proto {
    tonic::include_proto!("docreader");
}
