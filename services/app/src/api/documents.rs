//! Documents in a knowledge base: upload (file, text or URL), status, listing, chunks,
//! editing typed text, reparse, cancelling a parse, download, preview and delete. An upload
//! (or an edit's new text) is stored before anything is recorded, and recorded with its
//! ingest job in one transaction, so nothing is lost between the two.

use axum::Router;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::routing::{get, post, put};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::body::{Deleted, Envelope, Message, Page, PageQuery, query_pairs};
use super::error::ApiError;
use super::extract::{
    Caller, Json, Multipart, OwnedKnowledgeBase, Path, Query, normalize_folder, normalize_folder_filter,
};
use super::views::{DocumentView as View, document_view as view};
use crate::db;
use crate::db::chunks::Chunk;
use crate::db::documents::{Cancel, Knowledge};
use crate::ingest::{self, Upload, base_name, file_type};
use crate::state::{AppState, SharedState};

pub fn routes(max_bytes: usize) -> Router<SharedState> {
    Router::new()
        .route(
            "/api/v1/knowledge-bases/{id}/knowledge/file",
            // Room for the multipart framing on top of the file itself.
            post(upload_file).layer(DefaultBodyLimit::max(max_bytes + (1 << 20))),
        )
        .route("/api/v1/knowledge-bases/{id}/knowledge", get(list).delete(clear))
        .route("/api/v1/knowledge-bases/{id}/knowledge/manual", post(upload_manual))
        .route("/api/v1/knowledge-bases/{id}/knowledge/url", post(upload_url))
        .route("/api/v1/knowledge/{id}/reparse", post(reparse))
        .route("/api/v1/knowledge/{id}/cancel-parse", post(cancel_parse))
        .route("/api/v1/knowledge/manual/{id}", put(update_manual))
        .route("/api/v1/knowledge/batch", get(batch))
        .route("/api/v1/knowledge/{id}", get(read).put(rename).delete(remove))
        .route("/api/v1/knowledge/{id}/download", get(download))
        .route("/api/v1/knowledge/{id}/preview", get(preview))
        .route("/api/v1/knowledge/image/{id}/{chunk_id}", put(image_info))
        .route("/api/v1/chunks/{knowledge_id}", get(chunks).delete(remove_chunks))
        .route("/api/v1/chunks/{knowledge_id}/{id}", axum::routing::put(edit_chunk).delete(remove_chunk))
        .route("/api/v1/chunks/by-id/{id}", get(chunk))
}

fn too_large(limit_mb: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "file_too_large",
        format!("the file is larger than the {limit_mb} MB limit (MAX_FILE_SIZE_MB)"),
    )
}

async fn fetch(state: &AppState, caller: &Caller, id: Uuid) -> Result<Knowledge, ApiError> {
    db::documents::get(&state.db, caller.tenant_id, id).await?.ok_or_else(|| ApiError::not_found("document"))
}

async fn upload_file(
    State(state): State<SharedState>,
    OwnedKnowledgeBase { caller, id: kb }: OwnedKnowledgeBase,
    headers: HeaderMap,
    Multipart(mut form): Multipart,
) -> Result<Envelope<View>, ApiError> {
    let limit_mb = state.config.server.max_file_size_mb;
    let limit = (limit_mb << 20) as usize;
    // Refuse before reading (and long before storing) when the size is declared.
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit + (1 << 20)) {
        return Err(too_large(limit_mb));
    }
    let bad = |m: &str| ApiError::bad_request("file", m);
    let multipart = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large(limit_mb)
        } else {
            bad(&format!(
                "the multipart body does not parse ({}): send the file as the multipart/form-data field `file`, \
                 its name without control characters",
                e.body_text()
            ))
        }
    };
    // The file, and upstream's `fileName`: the file's path in a folder upload
    // (`docs/intro.md`), which files it in that folder. The SDK sends it after the file.
    let mut file: Option<(String, Vec<u8>)> = None;
    let mut relative: Option<String> = None;
    while let Some(mut field) = form.next_field().await.map_err(multipart)? {
        match field.name() {
            Some("file") if file.is_none() => {}
            Some("fileName") if relative.is_none() => {
                let text = field.text().await.map_err(multipart)?;
                relative = Some(text).filter(|t| !t.trim().is_empty());
                continue;
            }
            _ => continue,
        }
        let name = field.file_name().filter(|n| !n.trim().is_empty()).unwrap_or("upload").to_string();
        let mut data = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(multipart)? {
            if data.len() + chunk.len() > limit {
                return Err(too_large(limit_mb));
            }
            data.extend_from_slice(&chunk);
        }
        if data.is_empty() {
            return Err(bad("the file is empty"));
        }
        file = Some((name, data));
    }
    let Some((mut name, data)) = file else {
        return Err(bad("send the file as the multipart field `file`"));
    };
    let mut folder = String::new();
    if let Some(relative) = relative {
        let (dir, base) = relative.rsplit_once(['/', '\\']).unwrap_or(("", relative.as_str()));
        folder = normalize_folder(dir).map_err(|_| {
            ApiError::bad_request("fileName", "the file's path has control characters: send it without them")
        })?;
        if !base.trim().is_empty() {
            name = base.trim().to_string();
        }
    }
    let upload = Upload {
        tenant: caller.tenant_id,
        knowledge_base: kb,
        source_type: "file",
        file_name: &name,
        title: &name,
        content: Some(data),
        folder_path: &folder,
    };
    let k = ingest::accept(&state, upload).await?;
    Ok(Envelope::created(view(k)))
}

#[derive(Deserialize)]
struct Manual {
    title: String,
    content: String,
}

async fn upload_manual(
    State(state): State<SharedState>,
    OwnedKnowledgeBase { caller, id: kb }: OwnedKnowledgeBase,
    Json(body): Json<Manual>,
) -> Result<Envelope<View>, ApiError> {
    if body.content.trim().is_empty() {
        return Err(ApiError::bad_request("content", "the text is empty"));
    }
    let title = if body.title.trim().is_empty() { "manual" } else { body.title.trim() };
    let upload = Upload {
        tenant: caller.tenant_id,
        knowledge_base: kb,
        source_type: "manual",
        file_name: &format!("{title}.md"),
        title,
        content: Some(body.content.into_bytes()),
        folder_path: "",
    };
    let k = ingest::accept(&state, upload).await?;
    Ok(Envelope::created(view(k)))
}

/// Upstream's manual update: every field optional. `content` replaces the text (parsed
/// again); `title` renames (blank keeps it). Its `tag_id` and `channel` are ignored; its
/// `status` may not be `draft`, which weknora does not keep.
#[derive(Deserialize)]
struct ManualEdit {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

/// What a parse is cancelled with, as the document's error.
const CANCELLED: &str = "parse cancelled by the user";

/// Upstream's `PUT /knowledge/manual/{id}`: new text for a manual entry. The new text is
/// stored under a key of its own, then the entry is pointed at it and its parse queued in
/// one transaction (a parse or embedding under way is ended): until then the entry is as
/// it was, and if that fails the new text is removed. Without `content`, only the title.
async fn update_manual(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<ManualEdit>,
) -> Result<Envelope<View>, ApiError> {
    let doc = fetch(&state, &caller, id).await?;
    if doc.source_type != "manual" {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "not_manual",
            format!(
                "only a manual entry (markdown typed in) can be edited; this document came from a {}: \
                 PUT /api/v1/knowledge/{id} renames it, and a new upload replaces its content",
                if doc.source_type == "url" { "URL" } else { "file" }
            ),
        ));
    }
    if body.status.as_deref().is_some_and(|s| s.trim().eq_ignore_ascii_case("draft")) {
        return Err(ApiError::bad_request(
            "status",
            "drafts are not provided: weknora parses the text of every manual entry it keeps; \
             send `publish` or no status",
        ));
    }
    let title = body.title.as_deref().map(str::trim).unwrap_or_default();
    if title.chars().count() > 500 {
        return Err(ApiError::bad_request("title", "a title has at most 500 characters"));
    }
    let title = if title.is_empty() { doc.title.as_str() } else { title };
    let Some(content) = body.content else {
        let renamed = db::documents::rename(&state.db, caller.tenant_id, id, title)
            .await?
            .ok_or_else(|| ApiError::not_found("document"))?;
        crate::search::cache::knowledge_base_changed(&state, renamed.knowledge_base_id).await;
        return Ok(Envelope::new(view(renamed)));
    };
    if content.trim().is_empty() {
        return Err(ApiError::bad_request("content", "the text is empty"));
    }
    let revised = ingest::revise_manual(&state, caller.tenant_id, &doc, title, content).await?;
    crate::search::cache::knowledge_base_changed(&state, revised.knowledge_base_id).await;
    Ok(Envelope::new(view(revised)))
}

#[derive(Deserialize)]
struct FromUrl {
    url: String,
    #[serde(default)]
    title: String,
}

/// A web page or file by URL: docreader fetches it (with its private-address guard).
async fn upload_url(
    State(state): State<SharedState>,
    OwnedKnowledgeBase { caller, id: kb }: OwnedKnowledgeBase,
    Json(body): Json<FromUrl>,
) -> Result<Envelope<View>, ApiError> {
    let url = body.url.trim();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(ApiError::bad_request("url", "give an http:// or https:// URL"));
    }
    let title = if body.title.trim().is_empty() { url } else { body.title.trim() };
    let upload = Upload {
        tenant: caller.tenant_id,
        knowledge_base: kb,
        source_type: "url",
        file_name: url,
        title,
        content: None,
        folder_path: "",
    };
    let k = ingest::accept(&state, upload).await?;
    Ok(Envelope::created(view(k)))
}

/// Parses a document again (after a failure, or with new chunk settings): 202 with the
/// document, `pending`, as upstream's clients read it (its `ReparseKnowledge` decodes one).
async fn reparse(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Envelope<View>, ApiError> {
    fetch(&state, &caller, id).await?;
    if !db::documents::reparse(&state.db, caller.tenant_id, id, state.config.ingest.max_attempts).await? {
        return Err(ApiError::conflict("the document is already being parsed"));
    }
    let queued = fetch(&state, &caller, id).await?;
    state.new_job.notify_one();
    Ok(Envelope::accepted(view(queued)))
}

/// Upstream's cancel: a queued or running parse stops (`cancelled`, with the reason as
/// `error_message`); the chunks an earlier parse made stay, and a reparse parses it
/// again. Cancelling again answers the document as it is; a parse that has ended (completed
/// or failed) cannot be cancelled: 400, as upstream answers.
async fn cancel_parse(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Envelope<View, Message>, ApiError> {
    let doc = match db::documents::cancel_parse(&state.db, caller.tenant_id, id, CANCELLED).await? {
        Cancel::Cancelled(doc) | Cancel::Already(doc) => doc,
        Cancel::Ended(doc) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "parse_ended",
                format!(
                    "the parse has ended ({}): there is nothing to cancel; POST /api/v1/knowledge/{id}/reparse \
                     parses it again",
                    doc.parse_status
                ),
            ));
        }
        Cancel::NotFound => return Err(ApiError::not_found("document")),
    };
    Ok(Envelope::with(view(doc), Message { message: "Knowledge parse cancelled" }))
}

async fn read(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Envelope<View>, ApiError> {
    Ok(Envelope::new(view(fetch(&state, &caller, id).await?)))
}

/// Deletes the document, its chunks and job (cascade), then its stored file.
async fn remove(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Envelope<Deleted>, ApiError> {
    let doc = fetch(&state, &caller, id).await?;
    db::documents::delete(&state.db, caller.tenant_id, id).await?;
    crate::search::cache::knowledge_base_changed(&state, doc.knowledge_base_id).await;
    if let Some(key) = doc.object_key
        && let Err(e) = state.storage.delete(&key).await
    {
        tracing::warn!(error = %e, key, "the document is deleted but its file could not be removed");
    }
    Ok(Envelope::new(Deleted { id, deleted: true }))
}

/// Upstream's filters of a listing; empty ones filter nothing.
#[derive(Deserialize)]
struct ListFilter {
    keyword: Option<String>,
    file_type: Option<String>,
    parse_status: Option<String>,
    /// Present (even empty: the root) only to list one folder.
    folder_path: Option<String>,
    folder_recursive: Option<String>,
}

/// A knowledge base's documents, newest first, paged like the chunks, filtered as asked.
async fn list(
    State(state): State<SharedState>,
    OwnedKnowledgeBase { caller, id: kb }: OwnedKnowledgeBase,
    Query(page): Query<PageQuery>,
    Query(f): Query<ListFilter>,
) -> Result<Page<View>, ApiError> {
    let set = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
    let (keyword, file_type, parse_status) = (set(&f.keyword), set(&f.file_type), set(&f.parse_status));
    let folder = f.folder_path.as_deref().map(normalize_folder_filter);
    let filter = db::documents::Filter {
        keyword: keyword.as_deref(),
        file_type: file_type.as_deref(),
        parse_status: parse_status.as_deref(),
        folder_path: folder.as_deref(),
        folder_recursive: f.folder_recursive.as_deref().is_some_and(|r| matches!(r.trim(), "true" | "1")),
    };
    let (rows, total) =
        db::documents::list(&state.db, caller.tenant_id, kb, &filter, page.size(), page.offset()).await?;
    Ok(Page::page(rows.into_iter().map(view).collect(), page, total))
}

/// Upstream's `GET /knowledge/batch?ids=..&ids=..`: the caller's documents among them, in
/// the order asked (another tenant's are left out, as ids of nothing are).
async fn batch(
    State(state): State<SharedState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Envelope<Vec<View>>, ApiError> {
    let mut ids = Vec::new();
    for (key, value) in query_pairs(query.as_deref().unwrap_or("")) {
        if key == "ids" {
            for id in value.split(',').map(str::trim).filter(|id| !id.is_empty()) {
                ids.push(
                    id.parse::<Uuid>()
                        .map_err(|_| ApiError::bad_request("ids", &format!("`{id}` is not a valid UUID")))?,
                );
            }
        }
    }
    if ids.is_empty() || ids.len() > 200 {
        return Err(ApiError::bad_request("ids", "name 1 to 200 documents: ?ids=<id>&ids=<id>"));
    }
    let docs = db::documents::get_many(&state.db, caller.tenant_id, &ids).await?;
    Ok(Envelope::new(docs.into_iter().map(view).collect()))
}

/// Upstream's update sends its whole document: its title is what may change (a blank one
/// keeps the title).
#[derive(Deserialize)]
struct Rename {
    #[serde(default)]
    title: String,
}

async fn rename(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<Rename>,
) -> Result<Envelope<View>, ApiError> {
    let doc = fetch(&state, &caller, id).await?;
    let title = body.title.trim();
    if title.chars().count() > 500 {
        return Err(ApiError::bad_request("title", "a title has at most 500 characters"));
    }
    let title = if title.is_empty() { doc.title.as_str() } else { title };
    let renamed = db::documents::rename(&state.db, caller.tenant_id, id, title)
        .await?
        .ok_or_else(|| ApiError::not_found("document"))?;
    crate::search::cache::knowledge_base_changed(&state, renamed.knowledge_base_id).await;
    Ok(Envelope::new(view(renamed)))
}

#[derive(Serialize)]
struct Cleared {
    id: Uuid,
    deleted: i64,
}

/// Upstream's `DELETE /knowledge-bases/{id}/knowledge`: every document of the knowledge base
/// goes (with chunks, jobs and files); the knowledge base and its settings stay.
async fn clear(
    State(state): State<SharedState>,
    OwnedKnowledgeBase { caller, id: kb }: OwnedKnowledgeBase,
) -> Result<Envelope<Cleared>, ApiError> {
    let (deleted, keys) = db::documents::clear(&state.db, caller.tenant_id, kb).await?;
    crate::search::cache::knowledge_base_changed(&state, kb).await;
    for key in keys {
        if let Err(e) = state.storage.delete(&key).await {
            tracing::warn!(error = %e, key, "the document is deleted but its file could not be removed");
        }
    }
    Ok(Envelope::new(Cleared { id: kb, deleted }))
}

/// The original file as uploaded (upstream's download), named as it was sent, as an
/// attachment; a manual entry's text as `<title>.md`, as upstream serves it. Documents from
/// a URL have no file: 404 says so.
async fn download(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<axum::response::Response, ApiError> {
    original(&state, &caller, id, false).await
}

/// Upstream's preview: the same file, inline, its `Content-Type` by its extension, and
/// cached privately for an hour. Files a browser would run as part of the page (HTML,
/// SVG, XML, scripts, style sheets) are not shown inline: they come as a download.
async fn preview(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<axum::response::Response, ApiError> {
    original(&state, &caller, id, true).await
}

/// The document's stored file (or text), as an attachment or, with `inline`, for display.
async fn original(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    inline: bool,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let doc = fetch(state, caller, id).await?;
    let name = match doc.source_type.as_str() {
        "file" => doc.source.clone(),
        "manual" if doc.title.to_ascii_lowercase().ends_with(".md") => doc.title.clone(),
        "manual" => format!("{}.md", doc.title),
        _ => String::new(),
    };
    let Some(key) = doc.object_key.as_deref().filter(|_| !name.is_empty()) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "this document came from a URL: it has no stored file; read its chunks",
        ));
    };
    let bytes = state.storage.read(key).await.map_err(|e| {
        tracing::error!(error = %e, key, "reading a stored file failed");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", "the stored file cannot be read now")
    })?;
    let shown = if inline { preview_type(&name) } else { None };
    let (content_type, inline) = shown.map_or(("application/octet-stream", false), |shown| (shown, true));
    // The name's last component (a title or a name sent with folders may have more), made
    // safe for the header: no quotes, no control characters; the rest of Unicode encoded.
    let name: String = base_name(&name).chars().filter(|c| !c.is_control() && *c != '"').collect();
    let encoded = percent_encoding::utf8_percent_encode(&name, percent_encoding::NON_ALPHANUMERIC);
    let disposition = format!(
        "{}; filename=\"{}\"; filename*=UTF-8''{encoded}",
        if inline { "inline" } else { "attachment" },
        name.replace(|c: char| !c.is_ascii(), "_")
    );
    let mut response = bytes.to_bytes().into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if inline {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=3600"));
    }
    // Printable ASCII only, as built above: it always converts.
    if let Ok(disposition) = HeaderValue::try_from(disposition) {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    Ok(response)
}

/// The `Content-Type` a file is shown inline with, by its extension (text with its
/// charset; an unknown extension as plain bytes); None for what a browser would run as
/// part of the page, which is only ever downloaded.
fn preview_type(file_name: &str) -> Option<&'static str> {
    Some(match file_type(file_name).as_str() {
        "html" | "htm" | "xhtml" | "xml" | "svg" | "svgz" | "js" | "mjs" | "css" => return None,
        "pdf" => "application/pdf",
        "txt" | "log" => "text/plain; charset=utf-8",
        "md" | "markdown" => "text/markdown; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "json" => "application/json; charset=utf-8",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "bmp" => "image/bmp",
        "doc" => "application/msword",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xls" => "application/vnd.ms-excel",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "ppt" => "application/vnd.ms-powerpoint",
        "pptx" => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        _ => "application/octet-stream",
    })
}

/// Upstream's `PUT /knowledge/image/{id}/{chunk_id}` updates the image a chunk was cut
/// from. Weknora's parse keeps a document's text only, so no chunk has an image to
/// describe: for a chunk of the caller's document, 501 naming why (another's, or none, is
/// a 404 as everywhere).
async fn image_info(
    State(state): State<SharedState>,
    caller: Caller,
    Path((knowledge_id, chunk_id)): Path<(Uuid, Uuid)>,
) -> ApiError {
    let found = match db::chunks::get(&state.db, caller.tenant_id, chunk_id).await {
        Ok(found) => found,
        Err(e) => return e.into(),
    };
    if found.is_none_or(|c| c.knowledge_id != knowledge_id) {
        return ApiError::not_found("chunk of this document");
    }
    ApiError::not_provided(
        "image information for chunks (its parse keeps a document's text: no chunk has an image)",
        "/knowledge/image",
    )
}

async fn chunk(
    State(state): State<SharedState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Envelope<Chunk>, ApiError> {
    let found = db::chunks::get(&state.db, caller.tenant_id, id).await?;
    Ok(Envelope::new(found.ok_or_else(|| ApiError::not_found("chunk"))?))
}

/// Upstream's chunk update: `{content}` (its other fields are ignored). The chunk is
/// searched by its new words at once, and by meaning once its vector is made again.
#[derive(Deserialize)]
struct ChunkEdit {
    #[serde(default)]
    content: String,
}

async fn edit_chunk(
    State(state): State<SharedState>,
    caller: Caller,
    Path((knowledge_id, id)): Path<(Uuid, Uuid)>,
    Json(body): Json<ChunkEdit>,
) -> Result<Envelope<Chunk>, ApiError> {
    let doc = fetch(&state, &caller, knowledge_id).await?;
    let content = body.content.trim();
    if content.is_empty() {
        return Err(ApiError::bad_request("content", "a chunk needs text; to remove it, DELETE it"));
    }
    let words = crate::chunker::search_tokens(&state.jieba, content).join(" ");
    let reembed = (state.vectors.is_some() && doc.vector_status != "none").then_some(state.config.ingest.max_attempts);
    let edited = db::chunks::edit(&state.db, caller.tenant_id, knowledge_id, id, content, &words, reembed).await?;
    let edited = edited.ok_or_else(|| ApiError::not_found("chunk"))?;
    if reembed.is_some() {
        state.new_job.notify_one();
    }
    crate::search::cache::knowledge_base_changed(&state, doc.knowledge_base_id).await;
    Ok(Envelope::new(edited))
}

#[derive(Serialize)]
struct ChunksDeleted {
    deleted: u64,
}

async fn remove_chunk(
    State(state): State<SharedState>,
    caller: Caller,
    Path((knowledge_id, id)): Path<(Uuid, Uuid)>,
) -> Result<Envelope<Deleted>, ApiError> {
    let doc = fetch(&state, &caller, knowledge_id).await?;
    if db::chunks::delete(&state.db, caller.tenant_id, knowledge_id, Some(id)).await? == 0 {
        return Err(ApiError::not_found("chunk"));
    }
    crate::search::cache::knowledge_base_changed(&state, doc.knowledge_base_id).await;
    Ok(Envelope::new(Deleted { id, deleted: true }))
}

/// Every chunk of the document goes (the document stays; `reparse` makes them again).
async fn remove_chunks(
    State(state): State<SharedState>,
    caller: Caller,
    Path(knowledge_id): Path<Uuid>,
) -> Result<Envelope<ChunksDeleted>, ApiError> {
    let doc = fetch(&state, &caller, knowledge_id).await?;
    let deleted = db::chunks::delete(&state.db, caller.tenant_id, knowledge_id, None).await?;
    crate::search::cache::knowledge_base_changed(&state, doc.knowledge_base_id).await;
    Ok(Envelope::new(ChunksDeleted { deleted }))
}

async fn chunks(
    State(state): State<SharedState>,
    caller: Caller,
    Path(knowledge_id): Path<Uuid>,
    Query(page): Query<PageQuery>,
) -> Result<Page<Chunk>, ApiError> {
    fetch(&state, &caller, knowledge_id).await?;
    let (rows, total) = db::chunks::list(&state.db, caller.tenant_id, knowledge_id, page.size(), page.offset()).await?;
    Ok(Page::page(rows, page, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preview_shows_what_is_safe_to_show_inline() {
        assert_eq!(preview_type("彗星.TXT"), Some("text/plain; charset=utf-8"));
        assert_eq!(preview_type("a.pdf"), Some("application/pdf"));
        assert_eq!(preview_type("notes.md"), Some("text/markdown; charset=utf-8"));
        assert_eq!(preview_type("photo.jpeg"), Some("image/jpeg"));
        assert_eq!(preview_type("README"), Some("application/octet-stream"));
        for active in ["page.html", "x.HTM", "logo.svg", "feed.xml", "app.js", "style.css"] {
            assert_eq!(preview_type(active), None, "{active}");
        }
    }
}
