//! Chunks of parsed documents: listing, and keyword retrieval over the app-segmented
//! full-text index (Chinese works on plain PostgreSQL).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use sqlx::PgPool as Db;

/// A chunk: ours (`position`, `start_offset`, `end_offset`) and the same under upstream's
/// names (`chunk_index`, `start_at`, `end_at`), with the fields upstream's chunk carries.
#[derive(Serialize, sqlx::FromRow)]
pub struct Chunk {
    pub id: Uuid,
    pub knowledge_id: Uuid,
    pub knowledge_base_id: Uuid,
    pub position: i32,
    pub chunk_index: i32,
    pub content: String,
    pub start_offset: i32,
    pub end_offset: i32,
    pub start_at: i32,
    pub end_at: i32,
    pub chunk_type: String,
    pub is_enabled: bool,
    /// Upstream's names for its neighbours in the document, its parent and its content's
    /// MD5 (`""` when there is none), and the tenant's integer id.
    pub pre_chunk_id: String,
    pub next_chunk_id: String,
    pub parent_chunk_id: String,
    pub content_hash: String,
    pub image_info: String,
    #[serde(rename = "tenant_id")]
    pub tenant_number: i64,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

const CHUNK: &str = "id, knowledge_id, knowledge_base_id, position, position AS chunk_index, content, start_offset, \
                     end_offset, start_offset AS start_at, end_offset AS end_at, 'text' AS chunk_type, \
                     true AS is_enabled, \
                     coalesce((SELECT p.id::text FROM chunks p WHERE p.knowledge_id = chunks.knowledge_id \
                               AND p.position < chunks.position ORDER BY p.position DESC LIMIT 1), '') AS pre_chunk_id, \
                     coalesce((SELECT n.id::text FROM chunks n WHERE n.knowledge_id = chunks.knowledge_id \
                               AND n.position > chunks.position ORDER BY n.position LIMIT 1), '') AS next_chunk_id, \
                     coalesce(parent_id::text, '') AS parent_chunk_id, md5(content) AS content_hash, \
                     '' AS image_info, (SELECT number FROM tenants t WHERE t.id = chunks.tenant_id) AS tenant_number, \
                     created_at";

/// A search result (also what the cache and stored answers keep), in upstream's shape.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct Hit {
    pub id: Uuid,
    pub content: String,
    pub knowledge_id: Uuid,
    /// None in answers stored before hits carried it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knowledge_base_id: Option<Uuid>,
    pub chunk_index: i32,
    pub knowledge_title: String,
    pub knowledge_filename: String,
    /// Upstream's: where the passage is in its document, its place, the document's source
    /// (file name or URL) and image (none). Absent from hits stored before they carried them.
    #[serde(default)]
    pub start_at: i32,
    #[serde(default)]
    pub end_at: i32,
    #[serde(default)]
    pub seq: i32,
    #[serde(default)]
    pub knowledge_source: String,
    #[serde(default)]
    pub image_info: String,
    pub score: f64,
    /// How it matched: upstream's `match_type` and our `match_kind` ([`Matched`]).
    #[serde(flatten)]
    #[sqlx(rename = "match_kind", try_from = "String")]
    pub matched: Matched,
    pub chunk_type: String,
}

/// How a hit matched. It goes out as two fields: upstream's integer `match_type` (0 for a
/// vector match, also for one both retrievers found, as upstream's fusion keeps the vector
/// row; 1 for a keyword match), which upstream's clients decode, and our word `match_kind`
/// (`vector`, `keyword` or `both`), which says more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matched {
    Vector,
    Keyword,
    Both,
}

impl Matched {
    /// Upstream's `MatchType`.
    pub fn upstream_code(self) -> u8 {
        match self {
            Matched::Vector | Matched::Both => 0,
            Matched::Keyword => 1,
        }
    }
}

impl TryFrom<String> for Matched {
    type Error = String;

    fn try_from(word: String) -> Result<Matched, String> {
        match word.as_str() {
            "vector" => Ok(Matched::Vector),
            "keyword" => Ok(Matched::Keyword),
            "both" => Ok(Matched::Both),
            other => Err(format!("`{other}` is no match kind")),
        }
    }
}

impl Matched {
    pub fn word(self) -> &'static str {
        match self {
            Matched::Vector => "vector",
            Matched::Keyword => "keyword",
            Matched::Both => "both",
        }
    }
}

impl Serialize for Matched {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("match_type", &self.upstream_code())?;
        map.serialize_entry("match_kind", self.word())?;
        map.end()
    }
}

/// Reads both shapes: `match_kind` with upstream's integer beside it, and what answers
/// stored before it (and older cache entries) hold, the word as `match_type`.
impl<'de> Deserialize<'de> for Matched {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Matched, D::Error> {
        use serde_json::Value;
        #[derive(Deserialize)]
        struct Fields {
            match_kind: Option<String>,
            match_type: Option<Value>,
        }
        let fields = Fields::deserialize(d)?;
        match (fields.match_kind, fields.match_type) {
            (Some(word), _) | (None, Some(Value::String(word))) => word.try_into().map_err(serde::de::Error::custom),
            (None, Some(Value::Number(n))) if n.as_u64() == Some(1) => Ok(Matched::Keyword),
            (None, Some(Value::Number(_))) => Ok(Matched::Vector),
            _ => Err(serde::de::Error::missing_field("match_kind")),
        }
    }
}

/// One of the tenant's chunks by its id.
pub async fn get(db: &Db, tenant: Uuid, id: Uuid) -> Result<Option<Chunk>, sqlx::Error> {
    let sql = format!("SELECT {CHUNK} FROM chunks WHERE id = $1 AND tenant_id = $2");
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).bind(tenant).fetch_optional(db).await
}

/// Replaces a chunk's text (and the words it is searched by). Its vector, which no longer
/// fits, goes; with `reembed`, an embedding job for its document makes it again (the job
/// embeds the chunks that have none). None when there is no such chunk of the document.
pub async fn edit(
    db: &Db,
    tenant: Uuid,
    knowledge: Uuid,
    id: Uuid,
    content: &str,
    search_text: &str,
    reembed: Option<i32>,
) -> Result<Option<Chunk>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let sql = format!(
        "UPDATE chunks SET content = $4, search_text = $5 WHERE id = $1 AND knowledge_id = $2 AND tenant_id = $3 \
         RETURNING {CHUNK}"
    );
    let edited: Option<Chunk> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(knowledge)
        .bind(tenant)
        .bind(content)
        .bind(search_text)
        .fetch_optional(&mut *tx)
        .await?;
    if edited.is_some()
        && let Some(max_attempts) = reembed
    {
        sqlx::query("DELETE FROM chunk_embeddings WHERE chunk_id = $1").bind(id).execute(&mut *tx).await?;
        sqlx::query("UPDATE knowledge SET vector_status = 'pending', vector_error = NULL WHERE id = $1")
            .bind(knowledge)
            .execute(&mut *tx)
            .await?;
        super::jobs::queue(&mut tx, super::jobs::Kind::Embed, tenant, knowledge, max_attempts).await?;
    }
    tx.commit().await?;
    Ok(edited)
}

/// Deletes one of the document's chunks (`id`) or all of them (None), with their vectors;
/// how many. The document's chunk count follows.
pub async fn delete(db: &Db, tenant: Uuid, knowledge: Uuid, id: Option<Uuid>) -> Result<u64, sqlx::Error> {
    let mut tx = db.begin().await?;
    let gone =
        sqlx::query("DELETE FROM chunks WHERE knowledge_id = $1 AND tenant_id = $2 AND ($3::uuid IS NULL OR id = $3)")
            .bind(knowledge)
            .bind(tenant)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    sqlx::query(
        "UPDATE knowledge SET chunk_count = (SELECT count(*) FROM chunks WHERE knowledge_id = $1) WHERE id = $1",
    )
    .bind(knowledge)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(gone)
}

/// Where a search looks: the tenant's knowledge bases, and within them only these
/// documents unless `knowledge_ids` is empty.
pub struct Scope<'a> {
    pub tenant: Uuid,
    pub knowledge_bases: &'a [Uuid],
    pub knowledge_ids: &'a [Uuid],
}

/// One page of a document's chunks in order, and how many there are.
pub async fn list(
    db: &Db,
    tenant: Uuid,
    knowledge: Uuid,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Chunk>, i64), sqlx::Error> {
    let sql = format!(
        "SELECT {CHUNK} FROM chunks WHERE knowledge_id = $1 AND tenant_id = $2 ORDER BY position LIMIT $3 OFFSET $4"
    );
    let rows = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(knowledge)
        .bind(tenant)
        .bind(limit)
        .bind(offset)
        .fetch_all(db)
        .await?;
    let total = sqlx::query_scalar("SELECT count(*) FROM chunks WHERE knowledge_id = $1 AND tenant_id = $2")
        .bind(knowledge)
        .bind(tenant)
        .fetch_one(db)
        .await?;
    Ok((rows, total))
}

/// The best `limit` chunks for a `to_tsquery('simple', ...)` query (terms joined by OR,
/// ranked by how well they match).
pub async fn keyword_search(db: &Db, scope: &Scope<'_>, tsquery: &str, limit: i64) -> Result<Vec<Hit>, sqlx::Error> {
    sqlx::query_as(
        "SELECT c.id, c.content, c.knowledge_id, c.knowledge_base_id, c.position AS chunk_index, \
         k.title AS knowledge_title, k.source AS knowledge_filename, c.start_offset AS start_at, \
         c.end_offset AS end_at, c.position AS seq, k.source AS knowledge_source, '' AS image_info, \
         ts_rank(c.search, q)::float8 AS score, \
         'keyword' AS match_kind, \
         'text' AS chunk_type \
         FROM chunks c JOIN knowledge k ON k.id = c.knowledge_id, to_tsquery('simple', $1) q \
         WHERE c.tenant_id = $2 AND c.knowledge_base_id = ANY($3) \
           AND (cardinality($4::uuid[]) = 0 OR c.knowledge_id = ANY($4)) AND c.search @@ q \
         ORDER BY score DESC, c.position LIMIT $5",
    )
    .bind(tsquery)
    .bind(scope.tenant)
    .bind(scope.knowledge_bases)
    .bind(scope.knowledge_ids)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// How the vector index is searched.
#[derive(Debug, Clone, Copy)]
pub struct VectorSearch {
    /// pgvector >= 0.8 keeps scanning the HNSW index until `limit` rows pass the filters.
    pub iterative_scan: bool,
}

/// The `limit` chunks nearest (cosine) to `query` among vectors of `model`, of at least
/// `min_similarity`. Score: the cosine similarity.
pub async fn vector_search(
    db: &Db,
    how: VectorSearch,
    scope: &Scope<'_>,
    model: &str,
    query: &[f32],
    limit: i64,
    min_similarity: f64,
) -> Result<Vec<Hit>, sqlx::Error> {
    let dimensions = query.len();
    let vector = format!("[{}]", query.iter().map(f32::to_string).collect::<Vec<_>>().join(","));
    // The size is a number the model answered, written into the SQL so that the query's
    // expression and predicate match the partial index of that size.
    let sql = format!(
        "SELECT * FROM ( \
             SELECT c.id, c.content, c.knowledge_id, c.knowledge_base_id, c.position AS chunk_index, \
             k.title AS knowledge_title, k.source AS knowledge_filename, c.start_offset AS start_at, \
             c.end_offset AS end_at, c.position AS seq, k.source AS knowledge_source, '' AS image_info, \
             (1 - (e.embedding::vector({dimensions}) <=> $1::vector({dimensions})))::float8 AS score, \
             'vector' AS match_kind, 'text' AS chunk_type \
             FROM chunk_embeddings e JOIN chunks c ON c.id = e.chunk_id JOIN knowledge k ON k.id = c.knowledge_id \
             WHERE e.dimensions = {dimensions} AND e.model = $2 AND e.knowledge_base_id = ANY($3) AND c.tenant_id = $4 \
               AND (cardinality($5::uuid[]) = 0 OR c.knowledge_id = ANY($5)) \
             ORDER BY e.embedding::vector({dimensions}) <=> $1::vector({dimensions}) LIMIT $6) nearest \
         WHERE score >= $7"
    );
    // The index's settings for this search, in one statement and on the connection the search
    // then runs on: each vector search sets them, so a pooled connection's values from the
    // last one never matter, and no transaction is needed (two round trips, not five: under
    // load each one waits for the server to be scheduled).
    let mut conn = db.acquire().await?;
    let ef_search = (limit * 2).clamp(40, 1000).to_string();
    let settings = match how.iterative_scan {
        true => {
            "SELECT set_config('hnsw.ef_search', $1, false), set_config('hnsw.iterative_scan', 'relaxed_order', false)"
        }
        false => "SELECT set_config('hnsw.ef_search', $1, false)",
    };
    sqlx::query(settings).bind(&ef_search).execute(&mut *conn).await?;
    let hits = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(&vector)
        .bind(model)
        .bind(scope.knowledge_bases)
        .bind(scope.tenant)
        .bind(scope.knowledge_ids)
        .bind(limit)
        .bind(min_similarity)
        .fetch_all(&mut *conn)
        .await?;
    Ok(hits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hits_go_out_with_upstreams_integer_match_type_and_old_stored_hits_still_read() {
        let id = Uuid::from_u128(1);
        let stored_before = json!({
            "id": id, "content": "c", "knowledge_id": id, "chunk_index": 2, "knowledge_title": "t",
            "knowledge_filename": "f.md", "score": 0.5, "match_type": "both", "chunk_type": "text"
        });
        let hit: Hit = serde_json::from_value(stored_before).unwrap();
        assert_eq!((hit.matched, hit.knowledge_base_id), (Matched::Both, None));
        let out = serde_json::to_value(&hit).unwrap();
        assert_eq!((&out["match_type"], &out["match_kind"]), (&json!(0), &json!("both")), "{out}");
        assert!(out.get("knowledge_base_id").is_none(), "{out}");
        // What goes out comes back the same, and upstream's own integers read too.
        let back: Hit = serde_json::from_value(out).unwrap();
        assert_eq!(back.matched, Matched::Both);
        for (code, matched) in [(0, Matched::Vector), (1, Matched::Keyword), (6, Matched::Vector)] {
            let upstream = json!({
                "id": id, "content": "c", "knowledge_id": id, "knowledge_base_id": id, "chunk_index": 0,
                "knowledge_title": "t", "knowledge_filename": "f", "score": 1.0, "match_type": code, "chunk_type": "text"
            });
            assert_eq!(serde_json::from_value::<Hit>(upstream).unwrap().matched, matched, "{code}");
        }
        assert_eq!((Matched::Keyword.upstream_code(), Matched::Vector.upstream_code()), (1, 0));
    }
}
