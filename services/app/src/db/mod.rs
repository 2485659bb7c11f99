//! The data layer: every SQL statement the app runs, one module per table family. Handlers
//! and workers call these functions; none of them writes SQL of its own.

pub mod chunks;
pub mod documents;
pub mod folders;
pub mod jobs;
pub mod knowledge_bases;
pub mod like;
pub mod migrations;
pub mod models;
pub mod sessions;
pub mod suggestions;
pub mod system;
pub mod tenants;
pub mod transfers;
