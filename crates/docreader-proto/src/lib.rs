//! The DocReader contract, wire-compatible with WeKnora's: messages, the server trait and
//! the client, generated from proto/docreader.proto.

tonic::include_proto!("docreader");
