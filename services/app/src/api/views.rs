//! Our rows as upstream's clients read them, for every feature that answers them: a
//! document (the documents, document sets and search features) and a knowledge base (the
//! knowledge bases and transfers features).

use serde::{Deserialize, Serialize};

use super::body::null_as_default;
use crate::db::documents::Knowledge;
use crate::db::knowledge_bases::KnowledgeBase;

/// A document as upstream's clients read it: ours, and the same facts under upstream's
/// names (`type`, `file_name`, `file_size`, `storage_size`, `file_hash`, `error_message` —
/// `""` when there is none — and `enable_status`: `enabled` once it is searchable), with
/// what upstream has and we do not as what it is: no `description`, no summary
/// (`summary_status: "none"`).
#[derive(Serialize)]
pub(super) struct DocumentView {
    #[serde(flatten)]
    doc: Knowledge,
    #[serde(rename = "type")]
    kind: String,
    description: &'static str,
    file_name: String,
    file_size: i64,
    storage_size: i64,
    file_hash: String,
    error_message: String,
    enable_status: &'static str,
    summary_status: &'static str,
}

pub(super) fn document_view(doc: Knowledge) -> DocumentView {
    DocumentView {
        kind: doc.source_type.clone(),
        description: "",
        file_name: if doc.source_type == "file" { doc.source.clone() } else { String::new() },
        file_size: doc.size_bytes,
        storage_size: doc.size_bytes,
        file_hash: doc.checksum.clone().unwrap_or_default(),
        error_message: doc.error.clone().unwrap_or_default(),
        enable_status: if doc.parse_status == "completed" { "enabled" } else { "disabled" },
        summary_status: "none",
        doc,
    }
}

/// Upstream's `chunking_config`: a zero size (what its clients send unset) sets nothing.
#[derive(Deserialize, Serialize, Default)]
pub(super) struct Chunking {
    #[serde(default)]
    pub(super) chunk_size: i32,
    #[serde(default)]
    pub(super) chunk_overlap: i32,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) separators: Vec<String>,
}

/// A knowledge base as upstream's clients read it: ours, plus upstream's `chunking_config`
/// and the fields its objects always carry (`type`, `is_temporary`).
#[derive(Serialize)]
pub(super) struct KnowledgeBaseView {
    #[serde(flatten)]
    kb: KnowledgeBase,
    chunking_config: Chunking,
    #[serde(rename = "type")]
    kind: &'static str,
    is_temporary: bool,
    is_processing: bool,
}

pub(super) fn knowledge_base_view(kb: KnowledgeBase) -> KnowledgeBaseView {
    let chunking_config =
        Chunking { chunk_size: kb.chunk_size, chunk_overlap: kb.chunk_overlap, separators: kb.split_markers.clone() };
    let is_processing = kb.processing_count > 0;
    KnowledgeBaseView { kb, chunking_config, kind: "document", is_temporary: false, is_processing }
}
