//! Retrieval: keyword (PostgreSQL full-text over jieba-segmented text, terms joined by OR
//! and ranked) and vector (the question's embedding against the chunks' vectors, cosine),
//! fused by reciprocal rank fusion. Without pgvector or an embedding model, or while the
//! model does not answer, retrieval is keyword-only and says why. Answers are cached in
//! Redis until a knowledge base in the search changes.

use std::collections::HashMap;

use uuid::Uuid;

use crate::chunker::{query_terms, tsquery};
use crate::clients::embedding::Embedder;
use crate::db;
use crate::db::chunks::{Hit, Matched, Scope};
use crate::db::knowledge_bases::Indexed;
use crate::models::ModelError;
use crate::state::AppState;

#[derive(Debug)]
pub enum SearchError {
    /// A knowledge base is missing or another tenant's.
    NotFound,
    /// The question has nothing to search for.
    NoWords,
    /// A knowledge base was indexed with another model than the one questions are embedded with.
    ModelMismatch(String),
    /// The request turned keyword retrieval off, and vector retrieval is not there (why).
    NoRetriever(String),
    Database(sqlx::Error),
}

impl From<sqlx::Error> for SearchError {
    fn from(e: sqlx::Error) -> SearchError {
        SearchError::Database(e)
    }
}

/// A question and where to look.
pub struct Question<'a> {
    pub tenant: Uuid,
    pub knowledge_bases: &'a [Uuid],
    pub knowledge_ids: &'a [Uuid],
    pub query: &'a str,
    pub top_k: usize,
    /// The retrievers the caller turned off (upstream's `disable_*_match`).
    pub off: Off,
}

/// Retrievers a request turns off; by default none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Off {
    pub keyword: bool,
    pub vector: bool,
}

/// The hits, best first, and how they were found.
pub struct Retrieved {
    pub hits: Vec<Hit>,
    /// The words searched for after segmentation (for highlighting).
    pub terms: Vec<String>,
    /// `hybrid` or `keyword`.
    pub retrieval: &'static str,
    /// Why retrieval was keyword-only, when it was.
    pub notice: Option<String>,
    pub cached: bool,
}

/// Reciprocal rank fusion: each list adds 1 / (k + rank) (rank from 1) to a chunk's score;
/// a chunk in both lists matched [`Matched::Both`]. Best first; ties keep the keyword order.
pub fn fuse(keyword: Vec<Hit>, vector: Vec<Hit>, k: f64, top_k: usize) -> Vec<Hit> {
    let mut fused: Vec<(Hit, f64)> = Vec::new();
    let mut at: HashMap<Uuid, usize> = HashMap::new();
    for (list, kind) in [(keyword, Matched::Keyword), (vector, Matched::Vector)] {
        for (rank, hit) in list.into_iter().enumerate() {
            let share = 1.0 / (k + rank as f64 + 1.0);
            match at.get(&hit.id) {
                Some(&i) => {
                    fused[i].1 += share;
                    fused[i].0.matched = Matched::Both;
                }
                None => {
                    at.insert(hit.id, fused.len());
                    fused.push((Hit { matched: kind, ..hit }, share));
                }
            }
        }
    }
    // A stable sort keeps the keyword list's order among equal scores.
    fused.sort_by(|a, b| b.1.total_cmp(&a.1));
    fused.into_iter().take(top_k).map(|(hit, score)| Hit { score, ..hit }).collect()
}

/// The embedding model questions to these knowledge bases are embedded with, or why there
/// is none (vector retrieval is then off, and the search keyword-only).
async fn embedder_of(
    state: &AppState,
    q: &Question<'_>,
    kbs: &[Indexed],
) -> Result<Result<Embedder, String>, SearchError> {
    if state.vectors.is_none() {
        return Ok(Err("vector retrieval is off: the database has no pgvector (keyword retrieval only)".into()));
    }
    let mut own: Vec<Option<Uuid>> = kbs.iter().map(|kb| kb.embedding_model_id).collect();
    own.sort();
    own.dedup();
    if own.len() > 1 {
        let names: Vec<&str> = kbs.iter().map(|kb| kb.name.as_str()).collect();
        return Err(SearchError::ModelMismatch(format!(
            "the knowledge bases {} use different embedding models, so one question cannot be compared with all of \
             them: search them one at a time, or give them the same embedding_model_id",
            names.join(", ")
        )));
    }
    Ok(match crate::models::embedder(state, q.tenant, own[0]).await {
        Ok(Some(embedder)) => Ok(embedder),
        Ok(None) => Err("vector retrieval is off: no embedding model is configured (EMBEDDING_BASE_URL)".into()),
        Err(ModelError::Database(e)) => return Err(e.into()),
        Err(e) => Err(format!("vector retrieval skipped: the knowledge base's embedding model: {e}")),
    })
}

pub async fn search(state: &AppState, q: &Question<'_>) -> Result<Retrieved, SearchError> {
    let indexed = db::knowledge_bases::indexed(&state.db, q.tenant, q.knowledge_bases).await?;
    let mut wanted: Vec<Uuid> = q.knowledge_bases.to_vec();
    wanted.sort();
    wanted.dedup();
    if wanted.is_empty() || indexed.len() != wanted.len() {
        return Err(SearchError::NotFound);
    }
    let terms = query_terms(&state.jieba, q.query);
    let keywords = if q.off.keyword { String::new() } else { tsquery(&terms) };
    let (embedder, mut notice) = match embedder_of(state, q, &indexed).await? {
        _ if q.off.vector => (None, None),
        Ok(embedder) => (Some(embedder), None),
        Err(why) => (None, Some(why)),
    };
    let embedder = embedder.as_ref();
    if let Some(embedder) = embedder {
        for kb in &indexed {
            if let Some(model) = &kb.embedding_model
                && (model != embedder.model()
                    || (embedder.dimensions() > 0 && kb.embedding_dimensions != Some(embedder.dimensions() as i32)))
            {
                return Err(SearchError::ModelMismatch(format!(
                    "knowledge base `{}` was indexed with the embedding model `{model}` ({} dimensions), but questions \
                     are embedded with `{}`: reindex it (POST /api/v1/knowledge-bases/{}/reindex, or `cargo xtask \
                     reindex --kb {}`), or set EMBEDDING_MODEL_NAME back to `{model}`",
                    kb.name,
                    kb.embedding_dimensions.unwrap_or_default(),
                    embedder.model(),
                    kb.id,
                    kb.id,
                )));
            }
        }
    }
    if q.off.keyword && embedder.is_none() {
        let why = notice.unwrap_or_else(|| "vector retrieval is off".into());
        return Err(SearchError::NoRetriever(why));
    }
    if keywords.is_empty() && embedder.is_none() {
        return Err(SearchError::NoWords);
    }
    // What found the hits: both retrievers, or the one there is.
    let fused = if q.off.keyword { "vector" } else { "hybrid" };

    let model = embedder.map_or("", |e| e.model());
    let question = format!("{model}|{}|{:?}|{:?}|{}", q.top_k, q.knowledge_ids, q.off, q.query);
    let cache_key = crate::search::cache::search_key(state, q.tenant, &wanted, &question).await;
    if let Some(key) = &cache_key
        && let Some(cached) = crate::search::cache::get(state, key).await
        && let Ok(hits) = serde_json::from_str::<Vec<Hit>>(&cached)
    {
        crate::metrics::search_cache(true);
        let retrieval = if embedder.is_some() { fused } else { "keyword" };
        return Ok(Retrieved { hits, terms, retrieval, notice, cached: true });
    }
    crate::metrics::search_cache(false);

    let scope = Scope { tenant: q.tenant, knowledge_bases: &wanted, knowledge_ids: q.knowledge_ids };
    // Each list offers more candidates than are answered, so that fusion has room to work.
    let candidates = (q.top_k * 2).max(20) as i64;
    // The keyword search runs while the question is embedded: neither waits for the other.
    let keyword = async {
        if keywords.is_empty() {
            Ok(Vec::new())
        } else {
            db::chunks::keyword_search(&state.db, &scope, &keywords, candidates).await
        }
    };
    let embedded = async {
        match (embedder, state.vectors) {
            (Some(embedder), Some(how)) => Some((embedder.embed_query(q.query).await, how)),
            _ => None,
        }
    };
    let (keyword, embedded) = tokio::join!(keyword, embedded);
    let keyword = keyword?;
    let mut degraded = false;
    let vector = match embedded {
        Some((embedded, how)) => match embedded {
            Ok(question) => {
                let threshold = state.config.retrieval.vector_threshold;
                Some(db::chunks::vector_search(&state.db, how, &scope, model, &question, candidates, threshold).await?)
            }
            Err(e) => {
                tracing::warn!(error = %e, "search: the embedding model failed; answering by keyword only");
                notice = Some(format!("vector retrieval skipped: {e}"));
                degraded = true;
                None
            }
        },
        _ => None,
    };
    let (hits, retrieval) = match vector {
        Some(vector) => (fuse(keyword, vector, state.config.retrieval.rrf_k as f64, q.top_k), fused),
        None => (keyword.into_iter().take(q.top_k).collect(), "keyword"),
    };
    // A degraded answer is not cached: the next question tries the model again.
    if !degraded
        && let Some(key) = &cache_key
        && let Ok(json) = serde_json::to_string(&hits)
    {
        crate::search::cache::put(state, key, &json).await;
    }
    Ok(Retrieved { hits, terms, retrieval, notice, cached: false })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(n: u128, kind: Matched) -> Hit {
        Hit {
            id: Uuid::from_u128(n),
            content: format!("chunk {n}"),
            knowledge_id: Uuid::nil(),
            knowledge_base_id: None,
            chunk_index: 0,
            knowledge_title: String::new(),
            knowledge_filename: String::new(),
            start_at: 0,
            end_at: 0,
            seq: 0,
            knowledge_source: String::new(),
            image_info: String::new(),
            score: 0.0,
            matched: kind,
            chunk_type: "text".into(),
        }
    }

    #[test]
    fn fusion_rewards_agreement_and_says_how_each_matched() {
        let keyword = vec![hit(1, Matched::Keyword), hit(2, Matched::Keyword), hit(3, Matched::Keyword)];
        let vector = vec![hit(4, Matched::Vector), hit(2, Matched::Vector)];
        let fused = fuse(keyword, vector, 60.0, 10);
        let order: Vec<u128> = fused.iter().map(|h| h.id.as_u128()).collect();
        assert_eq!(order, [2, 1, 4, 3], "in both lists beats first in one");
        let kinds: Vec<&str> = fused.iter().map(|h| h.matched.word()).collect();
        assert_eq!(kinds, ["both", "keyword", "vector", "keyword"]);
        assert!((fused[0].score - (1.0 / 62.0 + 1.0 / 62.0)).abs() < 1e-12);
        assert!((fused[1].score - 1.0 / 61.0).abs() < 1e-12);
        assert_eq!(fuse(vec![hit(1, Matched::Keyword)], vec![hit(1, Matched::Vector)], 60.0, 0).len(), 0);
    }

    #[test]
    fn a_small_k_favours_the_top_of_each_list() {
        let fused =
            fuse(vec![hit(1, Matched::Keyword), hit(2, Matched::Keyword)], vec![hit(3, Matched::Vector)], 1.0, 3);
        assert_eq!(fused[0].score, 0.5);
        assert_eq!(fused[1].id.as_u128(), 3, "ties keep the keyword list first, then the vector list");
    }
}
