//! Clients of the services the app calls: docreader (gRPC), and the embedding and chat
//! models (HTTP, OpenAI-compatible or Ollama) with what their HTTP calls share (`remote`).

pub mod docreader;
pub mod embedding;
pub mod llm;
pub mod remote;
