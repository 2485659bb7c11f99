//! The shapes every successful answer has: `{"success": true, "data": ...}`, plus the page
//! a listing stands at, or whatever else a feature reports beside its data; and the pieces
//! of requests that several features read (lenient ids, `@`-mentions, query pairs).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `{"success": true, "data": T, ...M}`: `M`'s fields sit beside `data` (none by default).
#[derive(Serialize)]
pub struct Envelope<T, M = ()> {
    success: bool,
    data: T,
    #[serde(flatten)]
    meta: M,
    #[serde(skip)]
    status: StatusCode,
}

impl<T: Serialize> Envelope<T> {
    pub fn new(data: T) -> Envelope<T> {
        Envelope { success: true, data, meta: (), status: StatusCode::OK }
    }

    /// 201 Created.
    pub fn created(data: T) -> Envelope<T> {
        Envelope { status: StatusCode::CREATED, ..Envelope::new(data) }
    }

    /// 202 Accepted: the work goes on in the background.
    pub fn accepted(data: T) -> Envelope<T> {
        Envelope { status: StatusCode::ACCEPTED, ..Envelope::new(data) }
    }
}

impl<T: Serialize, M: Serialize> Envelope<T, M> {
    pub fn with(data: T, meta: M) -> Envelope<T, M> {
        Envelope { success: true, data, meta, status: StatusCode::OK }
    }
}

impl<T: Serialize, M: Serialize> IntoResponse for Envelope<T, M> {
    fn into_response(self) -> Response {
        (self.status, Json(&self)).into_response()
    }
}

/// `?page=N&page_size=M` of a listing: page from 1, 1..=200 rows, 20 by default.
#[derive(Deserialize, Default, Clone, Copy)]
pub struct PageQuery {
    page: Option<i64>,
    page_size: Option<i64>,
}

impl PageQuery {
    pub fn number(&self) -> i64 {
        self.page.unwrap_or(1).max(1)
    }

    /// This query, with `size` rows a page when it names none.
    pub fn or_size(self, size: i64) -> PageQuery {
        PageQuery { page_size: self.page_size.or(Some(size)), ..self }
    }

    pub fn size(&self) -> i64 {
        self.page_size.unwrap_or(20).clamp(1, 200)
    }

    /// Saturates: a page far past the end (up to `i64::MAX`) is an empty page, not an overflow.
    pub fn offset(&self) -> i64 {
        (self.number() - 1).saturating_mul(self.size())
    }
}

/// Where a page of a listing stands, beside its rows.
#[derive(Serialize)]
pub struct PageInfo {
    page: i64,
    page_size: i64,
    total: i64,
}

/// One page of rows: `{"success": true, "data": [...], "page", "page_size", "total"}`.
pub type Page<T> = Envelope<Vec<T>, PageInfo>;

impl<T: Serialize> Page<T> {
    pub fn page(rows: Vec<T>, query: PageQuery, total: i64) -> Page<T> {
        Envelope::with(rows, PageInfo { page: query.number(), page_size: query.size(), total })
    }
}

/// For `Option<Option<T>>` fields: absent -> None (keep), `null` -> Some(None) (clear),
/// a value -> Some(Some(value)). Use with `#[serde(default, deserialize_with = ...)]`.
pub fn some_or_null<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// For fields that upstream's clients send as `null` when unset (Go's nil slices and
/// maps): `null` reads as the default, as upstream reads it. Use with
/// `#[serde(default, deserialize_with = "null_as_default")]`.
pub fn null_as_default<'de, T: Deserialize<'de> + Default, D: serde::Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

/// For optional ids that upstream's clients send as `""` when unset (Go's zero string):
/// `""` and `null` read as none. Use with `#[serde(default, deserialize_with = "blank_id")]`.
pub fn blank_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<uuid::Uuid>, D::Error> {
    match Option::<String>::deserialize(d)?.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(id) => id.parse().map(Some).map_err(|_| serde::de::Error::custom(format!("`{id}` is not a valid UUID"))),
    }
}

/// Ids in a list, as [`null_as_default`] reads the list, with `""` entries dropped.
pub fn id_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<uuid::Uuid>, D::Error> {
    let ids: Vec<String> = null_as_default(d)?;
    ids.iter()
        .map(|id| id.trim())
        .filter(|id| !id.is_empty())
        .map(|id| id.parse().map_err(|_| serde::de::Error::custom(format!("`{id}` is not a valid UUID"))))
        .collect()
}

/// A sentence beside `data`, as upstream puts one in some answers: `{"message": ...}`.
#[derive(Serialize)]
pub struct Message {
    pub message: &'static str,
}

/// What a delete answers: `{"id": ..., "deleted": true}`.
#[derive(Serialize)]
pub struct Deleted {
    pub id: uuid::Uuid,
    pub deleted: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Lenient {
        #[serde(default, deserialize_with = "id_list")]
        ids: Vec<uuid::Uuid>,
        #[serde(default, deserialize_with = "blank_id")]
        id: Option<uuid::Uuid>,
        #[serde(default, deserialize_with = "null_as_default")]
        names: Vec<String>,
    }

    #[test]
    fn what_go_clients_send_for_unset_reads_as_unset() {
        let read = |v: serde_json::Value| serde_json::from_value::<Lenient>(v).map_err(|e| e.to_string());
        let unset = Lenient { ids: vec![], id: None, names: vec![] };
        assert_eq!(read(serde_json::json!({})), Ok(unset));
        let unset = Lenient { ids: vec![], id: None, names: vec![] };
        assert_eq!(read(serde_json::json!({"ids": null, "id": "", "names": null})), Ok(unset));
        let id = uuid::Uuid::from_u128(7);
        let set = read(serde_json::json!({"ids": ["", id], "id": id, "names": ["a"], "unknown": 1})).unwrap();
        assert_eq!(set, Lenient { ids: vec![id], id: Some(id), names: vec!["a".into()] });
        // What is not an id is still refused, naming the value.
        assert!(read(serde_json::json!({"id": "kb-1"})).unwrap_err().contains("`kb-1` is not a valid UUID"));
        assert!(read(serde_json::json!({"ids": ["x"]})).unwrap_err().contains("`x` is not a valid UUID"));
    }

    #[test]
    fn envelopes_put_meta_beside_data() {
        let plain = serde_json::to_value(Envelope::new(3)).unwrap();
        assert_eq!(plain, serde_json::json!({"success": true, "data": 3}));
        let q = PageQuery { page: Some(2), page_size: Some(500) };
        let page = serde_json::to_value(Page::page(vec!["a"], q, 201)).unwrap();
        assert_eq!(
            page,
            serde_json::json!({"success": true, "data": ["a"], "page": 2, "page_size": 200, "total": 201})
        );
        assert_eq!(q.offset(), 200);
        assert_eq!(PageQuery::default().offset(), 0);
        let far = PageQuery { page: Some(i64::MAX), page_size: Some(i64::MAX) };
        assert_eq!(far.offset(), i64::MAX);
    }
}

/// An `@`-mention in upstream's chat box: a knowledge base or a file to answer from.
#[derive(Deserialize)]
pub struct Mentioned {
    #[serde(default)]
    id: String,
    #[serde(default, rename = "type")]
    kind: String,
}

/// The knowledge bases and documents the mentions name, added to `kbs` and `docs`
/// (mentions of other kinds, and ids that are not ours to parse, are left out).
pub fn fold_mentions(mentioned: &[Mentioned], kbs: &mut Vec<Uuid>, docs: &mut Vec<Uuid>) {
    for m in mentioned {
        let Ok(id) = m.id.trim().parse::<Uuid>() else { continue };
        match m.kind.as_str() {
            "kb" => kbs.push(id),
            "file" => docs.push(id),
            _ => {}
        }
    }
}

/// A query string's `key=value` pairs, decoded (`+` is a space).
pub fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    let decode = |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
    query.split('&').filter(|p| !p.is_empty()).map(move |pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(key), decode(value))
    })
}
