//! Searching knowledge bases: `retrieval` (keyword and vector search, fused) and `cache`
//! (the Redis search cache, and the Redis probe readiness uses).

pub mod cache;
pub mod retrieval;
