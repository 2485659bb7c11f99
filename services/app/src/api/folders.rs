//! Upstream's folders: a knowledge base's folder tree, renaming (or moving) a folder with
//! its subfolders, and filing documents into a folder. Folders only classify: filing a
//! document never parses it again. A folder is a path (`docs/spec`); `""` is the root.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::body::{Envelope, blank_id, id_list, null_as_default};
use super::error::ApiError;
use super::extract::{
    Caller, Json, MAX_DEPTH, MAX_PATH, OwnedKnowledgeBase, normalize_folder, normalize_folder_filter,
};
use crate::db;
use crate::state::SharedState;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/api/v1/knowledge-bases/{id}/knowledge/folders", get(tree).put(rename))
        .route("/api/v1/knowledge/folder", post(file_into))
}

/// The most documents one request files.
const MAX_FILED: usize = 200;

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(parent, _)| parent)
}

/// A folder of the tree: the documents directly in it, and in it with its subfolders.
#[derive(Serialize, Debug, PartialEq)]
struct Node {
    path: String,
    name: String,
    document_count: i64,
    total_count: i64,
    children: Vec<Node>,
}

#[derive(Serialize, Debug, PartialEq)]
struct Tree {
    /// Documents at the root, in no folder.
    root_document_count: i64,
    /// Every document of the knowledge base.
    total_document_count: i64,
    folders: Vec<Node>,
}

/// The tree of the folders in use (with the folders above them, which may hold no document
/// of their own), each level sorted by name, ignoring case.
fn build(counts: &[(String, i64)]) -> Tree {
    let mut direct: BTreeMap<String, i64> = BTreeMap::new();
    let mut tree = Tree { root_document_count: 0, total_document_count: 0, folders: Vec::new() };
    for (path, n) in counts {
        tree.total_document_count += n;
        let path = normalize_folder_filter(path);
        if path.is_empty() {
            tree.root_document_count += n;
            continue;
        }
        *direct.entry(path.clone()).or_default() += n;
        let mut above = parent(&path);
        while !above.is_empty() {
            direct.entry(above.to_string()).or_default();
            above = parent(above);
        }
    }
    let mut children: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for path in direct.keys() {
        children.entry(parent(path)).or_default().push(path);
    }
    fn node(path: &str, direct: &BTreeMap<String, i64>, children: &BTreeMap<&str, Vec<&str>>) -> Node {
        let kids = level(path, direct, children);
        let document_count = direct[path];
        Node {
            path: path.to_string(),
            name: path.rsplit('/').next().unwrap_or(path).to_string(),
            document_count,
            total_count: document_count + kids.iter().map(|k| k.total_count).sum::<i64>(),
            children: kids,
        }
    }
    fn level(path: &str, direct: &BTreeMap<String, i64>, children: &BTreeMap<&str, Vec<&str>>) -> Vec<Node> {
        let mut nodes: Vec<Node> =
            children.get(path).into_iter().flatten().map(|p| node(p, direct, children)).collect();
        nodes.sort_by(|a, b| a.name.to_lowercase().cmp(&b.name.to_lowercase()).then_with(|| a.name.cmp(&b.name)));
        nodes
    }
    tree.folders = level("", &direct, &children);
    tree
}

async fn tree(
    State(state): State<SharedState>,
    OwnedKnowledgeBase { caller, id: kb }: OwnedKnowledgeBase,
) -> Result<Envelope<Tree>, ApiError> {
    let counts = db::folders::counts(&state.db, caller.tenant_id, kb).await?;
    Ok(Envelope::new(build(&counts)))
}

/// What moving or filing answers: how many documents moved, and the folder they are in.
#[derive(Serialize)]
struct Moved {
    moved_count: u64,
    folder_path: String,
}

#[derive(Deserialize)]
struct Rename {
    #[serde(default, deserialize_with = "null_as_default")]
    from: String,
    #[serde(default, deserialize_with = "null_as_default")]
    to: String,
}

/// Upstream's folder rename: `from` with every folder under it goes to `to`, merged with
/// what `to` holds. A folder cannot go into itself; a move to where it is moves nothing.
async fn rename(
    State(state): State<SharedState>,
    OwnedKnowledgeBase { caller, id: kb }: OwnedKnowledgeBase,
    Json(body): Json<Rename>,
) -> Result<Envelope<Moved>, ApiError> {
    let from = normalize_folder(&body.from)
        .map_err(|_| ApiError::bad_request("from", "a folder path has no control characters"))?;
    let to = normalize_folder(&body.to)
        .map_err(|_| ApiError::bad_request("to", "a folder path has no control characters"))?;
    if from.is_empty() {
        return Err(ApiError::bad_request("from", "name the folder to move (the root cannot be moved)"));
    }
    if to.is_empty() {
        return Err(ApiError::bad_request(
            "to",
            "name where the folder goes (to file documents at the root, use POST /api/v1/knowledge/folder)",
        ));
    }
    if to == from {
        return Ok(Envelope::new(Moved { moved_count: 0, folder_path: to }));
    }
    if to.starts_with(&format!("{from}/")) {
        return Err(ApiError::bad_request("to", "a folder cannot be moved into its own subfolder"));
    }
    // Where each folder under `from` would end up must fit the limits as it is.
    for path in db::folders::paths_under(&state.db, caller.tenant_id, kb, &from).await? {
        let moved = format!("{to}{}", &path[from.len()..]);
        if normalize_folder(&moved)? != moved {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_argument",
                format!(
                    "to: the folder `{path}` would become `{moved}`, deeper than {MAX_DEPTH} folders or longer \
                     than {MAX_PATH} characters: choose a shorter destination"
                ),
            ));
        }
    }
    let moved_count = db::folders::rename(&state.db, caller.tenant_id, kb, &from, &to).await?;
    Ok(Envelope::new(Moved { moved_count, folder_path: to }))
}

#[derive(Deserialize)]
struct FileInto {
    #[serde(default, deserialize_with = "blank_id")]
    kb_id: Option<Uuid>,
    #[serde(default, deserialize_with = "id_list")]
    knowledge_ids: Vec<Uuid>,
    #[serde(default, deserialize_with = "null_as_default")]
    folder_path: String,
}

/// Upstream's `POST /knowledge/folder`: files documents of a knowledge base in a folder
/// (`""`: the root), creating it. Ids of no document of that knowledge base move nothing.
async fn file_into(
    State(state): State<SharedState>,
    caller: Caller,
    Json(body): Json<FileInto>,
) -> Result<Envelope<Moved>, ApiError> {
    let kb = body.kb_id.ok_or_else(|| ApiError::bad_request("kb_id", "name the knowledge base"))?;
    caller.own_knowledge_base(&state, kb).await?;
    let mut ids = body.knowledge_ids;
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() || ids.len() > MAX_FILED {
        return Err(ApiError::bad_request("knowledge_ids", &format!("name 1 to {MAX_FILED} documents")));
    }
    let folder = normalize_folder(&body.folder_path)?;
    let moved_count = db::folders::file_into(&state.db, caller.tenant_id, kb, &ids, &folder).await?;
    Ok(Envelope::new(Moved { moved_count, folder_path: folder }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::extract::MAX_NAME;

    #[test]
    fn folder_paths_are_stored_in_one_form_and_cannot_climb_out() {
        let n = |raw: &str| normalize_folder(raw).unwrap();
        assert_eq!(n(""), "");
        assert_eq!(n("/docs//spec/"), "docs/spec");
        assert_eq!(n("..\\..\\etc/./passwd"), "etc/passwd");
        assert_eq!(n(" a. / b "), "a/b");
        assert_eq!(n("文档/规范"), "文档/规范");
        assert!(normalize_folder("a\u{0}b").is_err() && normalize_folder("a\nb").is_err());
        let deep = (0..20).map(|i| i.to_string()).collect::<Vec<_>>().join("/");
        assert_eq!(n(&deep).split('/').count(), MAX_DEPTH);
        let long = "é".repeat(500);
        assert_eq!(n(&long).chars().count(), MAX_NAME);
        let wide = vec!["x".repeat(100); 16].join("/");
        let cut = n(&wide);
        assert!(cut.chars().count() <= MAX_PATH && cut.split('/').count() == 10, "{}", cut.len());
        assert_eq!(normalize_folder_filter("a\u{0}b/"), "ab");
    }

    #[test]
    fn the_tree_has_every_folder_above_those_in_use_with_their_totals() {
        let counts =
            [("".to_string(), 2), ("docs/spec".to_string(), 3), ("docs/spec/v2".into(), 1), ("Archive".into(), 4)];
        let tree = build(&counts);
        assert_eq!((tree.root_document_count, tree.total_document_count), (2, 10));
        let names: Vec<&str> = tree.folders.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["Archive", "docs"], "sorted by name, ignoring case");
        let docs = &tree.folders[1];
        assert_eq!((docs.path.as_str(), docs.document_count, docs.total_count), ("docs", 0, 4));
        let spec = &docs.children[0];
        assert_eq!(
            (spec.path.as_str(), spec.name.as_str(), spec.document_count, spec.total_count),
            ("docs/spec", "spec", 3, 4)
        );
        assert_eq!(spec.children[0].path, "docs/spec/v2");
        assert!(spec.children[0].children.is_empty());
        let json = serde_json::to_value(&tree).unwrap();
        assert_eq!(json["folders"][0]["children"], serde_json::json!([]), "{json}");
        assert_eq!(build(&[]), Tree { root_document_count: 0, total_document_count: 0, folders: vec![] });
    }
}
