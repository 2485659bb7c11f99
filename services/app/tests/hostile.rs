//! Every route of the app, found by reading its source, against hostile callers and input:
//! no API key or a wrong one, another tenant's IDs, malformed IDs, bodies of the wrong
//! size, shape, type or encoding, ~64 KiB query strings, methods a path does not have,
//! path-like upload names, and URLs at private addresses (directly and through a
//! redirect). No answer may be a 5xx, every error answers in the app's JSON error shape,
//! and nothing of one tenant reaches another tenant or a caller without a key.
//!
//! The route table is read from `src/api` (every `.route("PATH", get(..).post(..))`), so
//! a route declared tomorrow is walked by every case without a line added here. Upload and
//! URL-import routes are found the same way: by what they answer to a valid upload or URL.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{Value, json};
use weknora_testkit::{Pg, Redis, free_port};

mod support;
use support::*;

/// The methods a route may have. A method router using anything else (`any`, `on`, a
/// service) stops the test, so that the scanner learns it instead of a route going unwalked.
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];

/// The routes anyone may call without a key (none of them may show a tenant's data).
const PUBLIC: [&str; 4] = ["/health", "/ready", "/metrics", "/api/v1/system/info"];

/// The upload limit the app runs with here (MAX_FILE_SIZE_MB): above the JSON limit, so
/// that an upload between the two proves each route has its own.
const MAX_FILE_SIZE_MB: usize = 3;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Route {
    path: String,
    method: String,
}

impl Route {
    fn has_body(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "PUT" | "PATCH")
    }
}

// ---- the route table, read from the source ----

/// Every `.route("PATH", <method router>)` under src/api, one entry per method.
fn route_table() -> Vec<Route> {
    let files = rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api"));
    let mut routes = BTreeSet::new();
    for file in files {
        let name = file.display().to_string();
        let code = code_of(&std::fs::read_to_string(&file).unwrap());
        for unknown in [".nest(", ".nest_service(", ".route_service(", ".fallback_service("] {
            assert!(
                !code.contains(unknown),
                "{name} uses `{unknown}`: teach tests/hostile.rs's route scanner to read it"
            );
        }
        for (at, _) in code.match_indices(".route(") {
            let args = call_arguments(&code[at + ".route(".len()..]);
            let (path, router) = literal_and_rest(args)
                .unwrap_or_else(|| panic!("{name}: a `.route(` whose path is not a string literal: {args}"));
            for method in methods_of(router, &name, &path) {
                routes.insert(Route { path: path.clone(), method });
            }
        }
    }
    routes.into_iter().collect()
}

/// Rust source with its comments blanked out; strings and character literals kept.
fn code_of(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < c.len() {
        let next = c.get(i + 1).copied();
        let after_ident = i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_');
        if c[i] == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if c[i] == '/' && next == Some('*') {
            i += 2;
            while i < c.len() && !(c[i] == '*' && c.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
            out.push(' ');
        } else if c[i] == '"' || (c[i] == 'r' && !after_ident && raw_string_hashes(&c[i + 1..]).is_some()) {
            let end = literal_end(&c, i);
            out.extend(&c[i..end]);
            i = end;
        } else if c[i] == '\'' && (next == Some('\\') || c.get(i + 2) == Some(&'\'')) {
            // A character literal ('x', '\n', '\''), not a lifetime.
            let mut j = if next == Some('\\') { i + 3 } else { i + 2 };
            while j < c.len() && c[j] != '\'' {
                j += 1;
            }
            out.extend(&c[i..=j.min(c.len() - 1)]);
            i = j + 1;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// `#*"` after an `r`: the number of hashes of a raw string's opening.
fn raw_string_hashes(rest: &[char]) -> Option<usize> {
    let hashes = rest.iter().take_while(|&&ch| ch == '#').count();
    (rest.get(hashes) == Some(&'"')).then_some(hashes)
}

/// Where the string literal opening at `c[i]` (`"` or `r#"`) ends (one past it).
fn literal_end(c: &[char], i: usize) -> usize {
    if c[i] == 'r' {
        let hashes = raw_string_hashes(&c[i + 1..]).unwrap();
        let mut j = i + hashes + 2;
        while j < c.len() {
            if c[j] == '"' && c[j + 1..].iter().take(hashes).filter(|&&ch| ch == '#').count() == hashes {
                return j + 1 + hashes;
            }
            j += 1;
        }
        return c.len();
    }
    let mut j = i + 1;
    while j < c.len() {
        match c[j] {
            '\\' => j += 2,
            '"' => return j + 1,
            _ => j += 1,
        }
    }
    c.len()
}

/// The arguments of a call whose `(` was just passed: up to its matching `)`.
fn call_arguments(code: &str) -> &str {
    let c: Vec<(usize, char)> = code.char_indices().collect();
    let chars: Vec<char> = c.iter().map(|&(_, ch)| ch).collect();
    let (mut depth, mut i) = (1, 0);
    while i < chars.len() {
        match chars[i] {
            '"' => {
                i = literal_end(&chars, i);
                continue;
            }
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &code[..c[i].0];
                }
            }
            _ => {}
        }
        i += 1;
    }
    panic!("a `.route(` call that does not end: {code:.200}")
}

/// A leading string literal (without escapes) and what follows its comma.
fn literal_and_rest(args: &str) -> Option<(String, &str)> {
    let rest = args.trim_start().strip_prefix('"')?;
    let end = rest.find('"')?;
    let router = rest[end + 1..].trim_start().strip_prefix(',')?;
    Some((rest[..end].to_string(), router))
}

/// The HTTP methods of a method router expression: `get(a).post(b).layer(..)`.
fn methods_of(router: &str, file: &str, path: &str) -> Vec<String> {
    let chars: Vec<char> = router.chars().collect();
    let (mut depth, mut word, mut methods, mut i) = (0, String::new(), Vec::new(), 0);
    while i < chars.len() {
        let ch = chars[i];
        match ch {
            '"' => {
                i = literal_end(&chars, i);
                word.clear();
                continue;
            }
            '(' => {
                if depth == 0 {
                    let callee = word.rsplit("::").next().unwrap_or_default();
                    let upper = callee.to_ascii_uppercase();
                    if METHODS.contains(&upper.as_str()) {
                        methods.push(upper);
                    } else if !matches!(callee, "" | "layer" | "route_layer") {
                        panic!(
                            "{file}: the route {path} uses `{callee}(..)`, which tests/hostile.rs's route scanner \
                             does not know: teach it (a method to walk, or a layer to skip)"
                        );
                    }
                }
                depth += 1;
                word.clear();
            }
            ')' => {
                depth -= 1;
                word.clear();
            }
            c if c.is_alphanumeric() || c == '_' || c == ':' => word.push(c),
            _ => word.clear(),
        }
        i += 1;
    }
    assert!(!methods.is_empty(), "{file}: no method found for the route {path} in `{router}`");
    methods
}

/// The `{param}`s of a path template, each with the collection named just before it
/// (`/api/v1/sessions/{id}/stop` -> `sessions`).
fn params(path: &str) -> Vec<String> {
    let segments: Vec<&str> = path.split('/').collect();
    segments
        .iter()
        .enumerate()
        .filter(|(_, s)| s.starts_with('{'))
        .map(|(i, s)| {
            assert!(!s.starts_with("{*"), "{path}: a wildcard; teach tests/hostile.rs to fill it");
            segments[..i].iter().rev().find(|s| !s.starts_with('{')).unwrap_or(&"").to_string()
        })
        .collect()
}

/// Collections whose ids are upstream's integers, not UUIDs.
fn numbered(collection: &str) -> bool {
    matches!(collection, "tenants" | "api-keys")
}

/// Collections whose parameter is a name every tenant has (`/tenants/kv/{key}`: a setting
/// of the caller's own tenant), not an id of anything of one tenant's.
fn named(collection: &str) -> bool {
    collection == "kv"
}

/// A well-formed id of nothing in `collection`, and its nil (all zeros).
fn nothing_in(collection: &str) -> (String, String) {
    if named(collection) {
        ("no-such-setting".into(), "nil".into())
    } else if numbered(collection) {
        ("987654321".into(), "0".into())
    } else {
        (uuid(), "00000000-0000-0000-0000-000000000000".into())
    }
}

/// The path with its parameters replaced, in order, by `values`.
fn fill(path: &str, values: &[String]) -> String {
    let mut values = values.iter();
    path.split('/')
        .map(|s| if s.starts_with('{') { values.next().unwrap().clone() } else { s.to_string() })
        .collect::<Vec<_>>()
        .join("/")
}

/// Every combination of one value per parameter.
fn combinations(options: &[Vec<String>]) -> Vec<Vec<String>> {
    options.iter().fold(vec![vec![]], |done, values| {
        done.iter().flat_map(|prefix| values.iter().map(move |v| [prefix.clone(), vec![v.clone()]].concat())).collect()
    })
}

// ---- what every answer must be ----

fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.chars().count() > 300 {
        format!("{}… ({} bytes)", text.chars().take(300).collect::<String>(), bytes.len())
    } else {
        text.into()
    }
}

fn shorten(target: &str) -> String {
    if target.len() > 120 {
        format!("{}…({} bytes)", target.chars().take(100).collect::<String>(), target.len())
    } else {
        target.to_string()
    }
}

/// `{"success": false, "error": {"code", "message"}}` as application/json.
fn error_shape(reply: &Reply) -> Result<(), String> {
    let content_type = reply.header("content-type").unwrap_or("(none)");
    if !content_type.starts_with("application/json") {
        return Err(format!(
            "a {} with content-type `{content_type}`, not application/json: {}",
            reply.status,
            snippet(&reply.body)
        ));
    }
    let body: Value = serde_json::from_slice(&reply.body)
        .map_err(|e| format!("a {} whose body is not JSON ({e}): {}", reply.status, snippet(&reply.body)))?;
    let text = |v: &Value| v.as_str().is_some_and(|s| !s.trim().is_empty());
    // Upstream's shape: an integer code (also at the top level, where the Go SDK reads it).
    let code = body["error"]["code"].as_u64().filter(|c| (1000..3000).contains(c));
    if body["success"] != false
        || code.is_none()
        // (upstream's duplicate upload answers a word there instead)
        || (body["code"].as_u64() != code && !body["code"].as_str().is_some_and(|w| w.starts_with("duplicate_")))
        || !text(&body["error"]["message"])
        || !text(&body["error"]["details"]["reason"])
    {
        return Err(format!(
            "a {} not in the shape {{success: false, code, error: {{code, message, details: {{reason}}}}}}: {body}",
            reply.status
        ));
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Expect {
    /// Whatever status, as long as it is no 5xx.
    Any,
    /// A 4xx.
    Refused,
    Only(&'static [u16]),
}

impl Expect {
    fn allows(self, status: u16) -> bool {
        match self {
            Expect::Any => status < 500,
            Expect::Refused => (400..500).contains(&status),
            Expect::Only(list) => list.contains(&status),
        }
    }
}

struct TenantA {
    key: String,
    /// Upstream's integer ids: A's tenant number and its key's.
    tenant: String,
    key_id: String,
    kb: String,
    doc: String,
    session: String,
    model: String,
}

struct Hostile {
    port: u16,
    a: TenantA,
    b_key: String,
    /// What of tenant A must never reach tenant B or a caller without a key.
    secrets: Vec<String>,
    sent: Cell<usize>,
    failures: RefCell<Vec<String>>,
}

/// The marker in every name and text of tenant A.
const MARK: &str = "zq81";

impl Hostile {
    fn fail(&self, label: &str, why: &str) {
        self.failures.borrow_mut().push(format!("{label}: {why}"));
    }

    /// Sends one request with `key` as X-API-Key and checks what every answer must be and
    /// `expect`; the answer, or None (a failure recorded) when none came.
    fn call(
        &self,
        key: Option<&str>,
        case: &str,
        method: &str,
        target: &str,
        body: Option<(&str, &[u8])>,
        expect: Expect,
    ) -> Option<Reply> {
        self.sent.set(self.sent.get() + 1);
        let label = format!("{method} {} [{case}]", shorten(target));
        let headers: Vec<(&str, &str)> = key.map(|k| ("X-API-Key", k)).into_iter().collect();
        let reply = match exchange(self.port, method, target, &headers, body) {
            Ok(reply) => reply,
            Err(e) => {
                self.fail(&label, &e);
                return None;
            }
        };
        if reply.status >= 500 || !expect.allows(reply.status) {
            self.fail(&label, &format!("answered {}: {}", reply.status, snippet(&reply.body)));
        }
        if reply.status >= 400
            && let Err(why) = error_shape(&reply)
        {
            self.fail(&label, &why);
        }
        if key != Some(self.a.key.as_str()) {
            let text = format!("{}\n{}", reply.head, String::from_utf8_lossy(&reply.body));
            for secret in self.secrets.iter().filter(|s| text.contains(s.as_str())) {
                self.fail(&label, &format!("tenant A's `{secret}` reached this caller: {}", snippet(&reply.body)));
            }
        }
        Some(reply)
    }

    fn owner(&self) -> Option<&str> {
        Some(&self.a.key)
    }

    /// Tenant A's IDs a parameter after `collection` may stand for: that collection's, or
    /// every one for a collection this test does not know yet.
    fn a_ids(&self, collection: &str) -> Vec<String> {
        let a = &self.a;
        match collection {
            "knowledge-bases" => vec![a.kb.clone()],
            "knowledge" | "chunks" => vec![a.doc.clone()],
            "sessions" | "knowledge-chat" | "messages" => vec![a.session.clone()],
            "models" => vec![a.model.clone()],
            "tenants" => vec![a.tenant.clone()],
            "api-keys" => vec![a.key_id.clone()],
            "kv" => vec!["retrieval-config".into()],
            // UUIDs: the integer ids go to the collections that have them.
            _ => vec![a.kb.clone(), a.doc.clone(), a.session.clone(), a.model.clone()],
        }
    }

    /// The route's path with tenant A's IDs: one path per combination.
    fn a_targets(&self, route: &Route) -> Vec<String> {
        let options: Vec<Vec<String>> = params(&route.path).iter().map(|c| self.a_ids(c)).collect();
        combinations(&options).iter().map(|values| fill(&route.path, values)).collect()
    }

    /// Where tenant A's own hostile requests go: its real IDs, so that handlers get past
    /// their lookups to the input, except for deletes, which get IDs of nothing.
    fn owner_target(&self, route: &Route) -> String {
        if route.method == "DELETE" {
            let nothing: Vec<String> = params(&route.path).iter().map(|c| nothing_in(c).0).collect();
            fill(&route.path, &nothing)
        } else {
            self.a_targets(route).swap_remove(0)
        }
    }

    /// A body any route may take, naming tenant A's IDs wherever a body can name one.
    fn stranger_body(&self) -> Vec<u8> {
        let a = &self.a;
        json!({
            "name": "bravo-probe", "title": "bravo-probe", "description": "bravo-probe",
            "query": "backup", "content": "bravo probe text", "url": "http://127.0.0.2:1/nothing",
            "type": "KnowledgeQA", "role": "member",
            "parameters": {"base_url": "http://127.0.0.1:9/v1", "provider": "openai"},
            "knowledge_base_id": a.kb, "knowledge_base_ids": [a.kb], "knowledge_ids": [a.doc],
            "summary_model_id": a.model, "embedding_model_id": a.model,
            "session_id": a.session, "tenant_id": a.tenant,
        })
        .to_string()
        .into_bytes()
    }

    // ---- the cases ----

    /// 1, 2: without a key or with a wrong one, 401 (the public routes: anything but a 5xx).
    fn without_a_key(&self, route: &Route) {
        let target = self.a_targets(route).swap_remove(0);
        let body = self.stranger_body();
        let body = route.has_body().then_some(("application/json", body.as_slice()));
        let public = PUBLIC.contains(&route.path.as_str());
        let expect = if public { Expect::Any } else { Expect::Only(&[401]) };
        let m = &route.method;
        self.call(None, "no key", m, &target, body, expect);
        let long = "k".repeat(8192);
        let wrong = [
            ("empty key", ""),
            ("unknown key", "wk_nope"),
            ("key-shaped unknown key", "wk_0000000000000000000000000000000000000000000000000000000000000000"),
            ("SQL in the key", "' OR '1'='1' --"),
            ("8 KiB key", long.as_str()),
            ("non-ASCII key", "clé-ünïcode-κλειδί"),
            ("Bearer prefix", "Bearer wk_nope"),
        ];
        for (case, key) in wrong {
            let reply = self.call(Some(key), case, m, &target, body, expect);
            let message = reply.as_ref().and_then(|r| serde_json::from_slice::<Value>(&r.body).ok());
            let message = message.as_ref().and_then(|v| v["error"]["message"].as_str()).unwrap_or_default();
            if !public && !key.is_empty() && message.contains("missing") {
                self.fail(
                    &format!("{m} {target} [{case}]"),
                    &format!("a key was sent, yet the answer says `{message}`"),
                );
            }
        }
    }

    /// 3: tenant B's key with tenant A's IDs: 404 or 403 where the path names them; for
    /// every route, nothing of A's in the answer (checked in `call`). A body method gets a
    /// JSON body and a multipart upload, and at least one of them must get to the lookup.
    fn as_another_tenant(&self, route: &Route) {
        let query = format!("?query=backup&page=1&knowledge_base_id={}", self.a.kb);
        let names_a = params(&route.path).iter().any(|c| !named(c));
        let strict = if names_a { Expect::Only(&[403, 404]) } else { Expect::Any };
        for target in self.a_targets(route) {
            let target = format!("{target}{query}");
            let b = Some(self.b_key.as_str());
            if !route.has_body() {
                self.call(b, "tenant B, A's IDs", &route.method, &target, None, strict);
                continue;
            }
            let json = self.stranger_body();
            let (upload_type, upload) = multipart("bravo-probe.md", b"# bravo probe\n\nbackup text\n");
            let bodies = [("application/json", json.as_slice()), (upload_type.as_str(), upload.as_slice())];
            let expect = if names_a { Expect::Refused } else { Expect::Any };
            let statuses: Vec<u16> = bodies
                .iter()
                .filter_map(|&body| {
                    self.call(b, "tenant B, A's IDs, JSON or multipart", &route.method, &target, Some(body), expect)
                })
                .map(|r| r.status)
                .collect();
            if names_a && !statuses.iter().any(|s| [403, 404].contains(s)) {
                self.fail(
                    &format!("{} {target} [tenant B, A's IDs]", route.method),
                    &format!("neither a JSON body nor an upload got to the lookup (403/404): {statuses:?}"),
                );
            }
        }
    }

    /// 4: IDs that are not IDs (and IDs of nothing): a 4xx naming the problem.
    fn malformed_ids(&self, route: &Route) {
        let params = params(&route.path);
        let long = "a".repeat(5000);
        for at in 0..params.len() {
            let (nothing, nil) = nothing_in(&params[at]);
            let bad: Vec<(&str, String)> = vec![
                ("not an id", "not-a-uuid".into()),
                ("5,000 characters", long.clone()),
                ("encoded path traversal", "..%2F..%2Fetc%2Fpasswd".into()),
                ("NUL", "%00".into()),
                ("unicode", "%E2%80%AE%F0%9F%92%A9-%C3%A9t%C3%A9".into()),
                ("invalid UTF-8", "%FF%FE".into()),
                ("blank", "%20".into()),
                ("id of nothing", nothing),
                ("nil id", nil),
            ];
            let mut values: Vec<String> = params.iter().map(|c| self.a_ids(c).swap_remove(0)).collect();
            for (case, value) in &bad {
                values[at] = value.clone();
                // With the query a search needs, so that the ID is what is at fault.
                let target = format!("{}?query=backup", fill(&route.path, &values));
                let body = route.has_body().then_some(("application/json", &b"{}"[..]));
                // A well-formed ID of nothing is a 404 where no body stands in the way.
                let nothing = matches!(*case, "id of nothing" | "nil id") && !named(&params[at]);
                let expect = if nothing && !route.has_body() { Expect::Only(&[404]) } else { Expect::Refused };
                self.call(self.owner(), case, &route.method, &target, body, expect);
            }
        }
    }

    /// 5: bodies too large, of the wrong type or shape, not UTF-8, of the wrong content type
    /// or empty; to every route, as tenant A with its own IDs.
    fn hostile_bodies(&self, route: &Route, bodies: &[(&str, String, Vec<u8>)]) {
        let target = self.owner_target(route);
        for (case, content_type, bytes) in bodies {
            self.call(self.owner(), case, &route.method, &target, Some((content_type, bytes)), Expect::Any);
        }
        self.call(self.owner(), "no body", &route.method, &target, None, Expect::Any);
    }

    /// 6: query strings of ~64 KiB (just under the 65,534 bytes hyper takes in a request
    /// line), and numbers at the ends of their range.
    fn hostile_queries(&self, route: &Route) {
        let target = self.owner_target(route);
        let room = 64 * 1024 - target.len() - 64;
        let queries = [
            ("64 KiB unknown parameter", format!("x={}", "a".repeat(room))),
            ("64 KiB of words", format!("query={}", "backup+".repeat(room / 7))),
            ("64 KiB number", format!("page={}&limit={}", "9".repeat(room / 2), "9".repeat(room / 2))),
            (
                "largest numbers",
                "page=9223372036854775807&page_size=9223372036854775807&limit=9223372036854775807&\
                 top_k=9223372036854775807"
                    .to_string(),
            ),
            (
                "smallest numbers",
                "page=-9223372036854775808&page_size=-1&limit=-9223372036854775808&top_k=-1".to_string(),
            ),
            ("NUL and bad dates", "query=%00&before_time=%00&page=%00".to_string()),
            ("invalid UTF-8", "query=%FF%FE&before_time=%FF".to_string()),
            ("not a date", "before_time=yesterday&limit=ten".to_string()),
            ("repeated parameters", "page=1&page=2&query=a&query=b".to_string()),
        ];
        for (case, query) in queries {
            let body = route.has_body().then_some(("application/json", &b"{}"[..]));
            self.call(self.owner(), case, &route.method, &format!("{target}?{query}"), body, Expect::Any);
        }
    }

    /// A method a path does not have: 405 in the JSON shape, saying which it has.
    fn undeclared_methods(&self, routes: &[Route]) {
        let paths: BTreeSet<&str> = routes.iter().map(|r| r.path.as_str()).collect();
        for path in paths {
            let declared: Vec<&str> = routes.iter().filter(|r| r.path == path).map(|r| r.method.as_str()).collect();
            let probe = Route { path: path.to_string(), method: "GET".into() };
            let target = self.a_targets(&probe).swap_remove(0);
            for method in METHODS.iter().filter(|m| !declared.contains(m)) {
                // DELETE of a path that has none must not delete: IDs of nothing.
                let target = if *method == "DELETE" {
                    self.owner_target(&Route { path: path.into(), method: "DELETE".into() })
                } else {
                    target.clone()
                };
                let reply = self.call(self.owner(), "undeclared method", method, &target, None, Expect::Only(&[405]));
                if let Some(reply) = reply.filter(|r| r.status == 405)
                    && reply.header("allow").is_none()
                {
                    self.fail(&format!("{method} {target}"), "a 405 without an Allow header");
                }
            }
        }
    }

    fn a_path(&self, path: &str) -> Option<Value> {
        let reply = self.call(self.owner(), "tenant A", "GET", path, None, Expect::Only(&[200]))?;
        serde_json::from_slice(&reply.body).ok()
    }
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The hostile bodies: (case, content type, bytes).
fn hostile_bodies() -> Vec<(&'static str, String, Vec<u8>)> {
    let json_limit = weknora_app::api::JSON_BODY_LIMIT;
    let file_limit = MAX_FILE_SIZE_MB << 20;
    let json = |s: &str| s.as_bytes().to_vec();
    let mut oversized = b"{\"name\":\"".to_vec();
    oversized.resize(json_limit + 1024, b'a');
    oversized.extend_from_slice(b"\"}");
    let (upload_type, oversized_upload) = multipart("big.bin", &vec![b'x'; file_limit + (1 << 20) + 1]);
    let (_, no_file) = multipart("x.txt", b"text");
    let no_file = String::from_utf8_lossy(&no_file).replace("name=\"file\"", "name=\"other\"").into_bytes();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let t = "application/json".to_string();
    vec![
        ("JSON over the JSON limit", t.clone(), oversized),
        ("upload over MAX_FILE_SIZE_MB", upload_type.clone(), oversized_upload),
        ("array for object", t.clone(), json(r#"[{"name":"x","title":"x","query":"x"}]"#)),
        ("number for object", t.clone(), json("42")),
        ("string for object", t.clone(), json(r#""text""#)),
        ("null", t.clone(), json("null")),
        ("missing fields", t.clone(), json("{}")),
        (
            "numbers for strings",
            t.clone(),
            json(r#"{"name":5,"title":5,"description":5,"query":5,"content":5,"url":5,"type":5,"role":5,"source":5}"#),
        ),
        (
            "strings for numbers and lists",
            t.clone(),
            json(
                r#"{"chunk_size":"big","chunk_overlap":"x","retrieval_top_k":"x","top_k":"x","knowledge_base_ids":"x",
                "knowledge_ids":{"a":1},"split_markers":"x","parameters":[],"knowledge_base_id":"not-a-uuid"}"#,
            ),
        ),
        (
            "null fields",
            t.clone(),
            json(
                r#"{"name":null,"title":null,"query":null,"content":null,"url":null,"knowledge_base_id":null,
                "parameters":null,"type":null}"#,
            ),
        ),
        (
            "NUL characters",
            t.clone(),
            json(
                r#"{"name":"a\u0000b","title":"a\u0000b","description":"\u0000","query":"backup \u0000",
                "content":"text \u0000 text",
                "url":"http://127.0.0.2:1/\u0000","type":"KnowledgeQA","role":"member",
                "parameters":{"base_url":"http://127.0.0.1:9/\u0000","provider":"openai"}}"#,
            ),
        ),
        (
            "lone surrogates",
            t.clone(),
            json(r#"{"name":"\ud800","title":"\udfff","query":"\ud800","content":"\ud800"}"#),
        ),
        (
            "numbers out of range",
            t.clone(),
            json(r#"{"chunk_size":1e400,"top_k":99999999999999999999999,"retrieval_top_k":-1}"#),
        ),
        (
            "duplicate keys",
            t.clone(),
            json(r#"{"name":"a","name":"b","title":"a","title":"b","query":"q","query":"r"}"#),
        ),
        ("100,000 levels deep", t.clone(), deep.into_bytes()),
        (
            "invalid UTF-8 in strings",
            t.clone(),
            b"{\"name\":\"\xff\xfe\",\"title\":\"\xc3\x28\",\"query\":\"\xed\xa0\x80\"}".to_vec(),
        ),
        ("invalid UTF-8", t.clone(), b"\xff\xfe\xfd".to_vec()),
        ("JSON as text/plain", "text/plain".into(), json(r#"{"name":"x","title":"x","query":"x"}"#)),
        ("form-encoded", "application/x-www-form-urlencoded".into(), json("name=x&query=y")),
        ("multipart without a boundary", "multipart/form-data".into(), json("--x\r\n\r\n--x--\r\n")),
        ("multipart that is not", "multipart/form-data; boundary=b".into(), json("not multipart at all")),
        ("multipart without a file", upload_type, no_file),
        ("empty JSON body", t, Vec::new()),
    ]
}

/// A loopback web server recording each request line: `/page` answers a page, `/hop/<n>`
/// a redirect to the n-th of `hops`, anything else a page saying it was reached.
struct Recorder {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    /// None when `ip` cannot be bound (no IPv6 here).
    fn start(ip: &str, hops: Vec<(u16, String)>) -> Option<Recorder> {
        let listener = TcpListener::bind((ip, 0)).ok()?;
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let mut buf = vec![0u8; 8192];
                let n = s.read(&mut buf).unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let line = head.lines().next().unwrap_or_default().to_string();
                log.lock().unwrap().push(line.clone());
                let path = line.split_whitespace().nth(1).unwrap_or("/");
                let hop = path.strip_prefix("/hop/").and_then(|n| n.parse::<usize>().ok()).and_then(|n| hops.get(n));
                let _ = match hop {
                    Some((status, location)) => write!(
                        s,
                        "HTTP/1.1 {status} Moved\r\nLocation: {location}\r\nContent-Length: 0\r\n\
                         Connection: close\r\n\r\n"
                    ),
                    None => {
                        let body = if path == "/page" {
                            "<html><body><p>An allow-listed page about standby regions.</p></body></html>"
                        } else {
                            "<html><body><p>A private address was reached.</p></body></html>"
                        };
                        write!(
                            s,
                            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                             Connection: close\r\n\r\n{body}",
                            body.len()
                        )
                    }
                };
            }
        });
        Some(Recorder { port, seen })
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn listing(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

#[test]
fn every_route_withstands_hostile_callers_and_input() {
    let started = Instant::now();
    let routes = route_table();
    let pairs = routes.len();
    assert!(pairs >= 25, "the route scan found only {pairs} method+path pairs in src/api: {routes:#?}");
    for public in PUBLIC {
        assert!(routes.iter().any(|r| r.path == public), "{public} is public here but is no route any more");
    }

    // URL targets at private addresses that count what reaches them, and an allow-listed
    // host (127.0.0.2, DOCREADER_URL_ALLOWLIST) that redirects to them.
    let target = Recorder::start("127.0.0.1", vec![]).unwrap();
    let target6 = Recorder::start("::1", vec![]);
    let t = target.port;
    let v6 = target6.as_ref().map(|r| format!("http://[::1]:{}/", r.port));
    let mut private = vec![
        format!("http://127.0.0.1:{t}/direct"),
        format!("http://localhost:{t}/direct"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://10.0.0.1/".to_string(),
        format!("http://2130706433:{t}/decimal"),
        "http://2130706433/".to_string(),
        format!("http://0x7f000001:{t}/hex"),
        format!("http://0177.0.0.1:{t}/octal"),
        format!("http://127.1:{t}/short"),
        format!("http://[::ffff:127.0.0.1]:{t}/mapped"),
        format!("http://0.0.0.0:{t}/unspecified"),
        format!("http://user:secret@127.0.0.1:{t}/credentials"),
    ];
    private.extend(v6.clone());
    let mut hops: Vec<(u16, String)> = vec![
        (302, format!("http://127.0.0.1:{t}/via-redirect")),
        (302, format!("http://localhost:{t}/via-redirect-name")),
        (301, "http://169.254.169.254/latest/meta-data/".to_string()),
        (307, format!("http://2130706433:{t}/via-redirect-decimal")),
        (308, format!("//127.0.0.1:{t}/via-scheme-relative")),
    ];
    hops.extend(v6.iter().map(|u| (302, format!("{u}via-redirect-v6"))));
    let redirector = Recorder::start("127.0.0.2", hops.clone()).expect("127.0.0.2 cannot be bound");
    let r = redirector.port;

    let pg = Pg::debian();
    let redis = Redis::start();
    let (_docreader, dr_port) = docreader_on(free_port(), &[("DOCREADER_URL_ALLOWLIST", "127.0.0.2")]);
    // The storage folder two levels inside a folder of its own, to see anything written
    // beside it or above it.
    let outer = tempfile::tempdir().unwrap();
    let files = outer.path().join("inner").join("files");
    std::fs::create_dir_all(&files).unwrap();
    let mut env = admin_env(pg.port, &redis.addr(), dr_port, &files);
    env.push(("MAX_FILE_SIZE_MB".into(), MAX_FILE_SIZE_MB.to_string()));
    let (_app, port) = start_app(&env);
    let admin = [("X-API-Key", ADMIN_KEY)];

    // Tenants A and B, by the admin; A's knowledge base, document, session (with an
    // answer in it) and model.
    let tenant = |name: &str| {
        let (status, _, body) = call(port, "POST", "/api/v1/tenants", &admin, Some(&json!({ "name": name })));
        assert_eq!(status, 201, "{body}");
        (body["data"]["api_key"].as_str().unwrap().to_string(), body["data"]["id"].as_i64().unwrap().to_string())
    };
    let (a_key, a_tenant) = tenant(&format!("alpha-tenant-{MARK}"));
    let (_, _, a_keys) = get(port, &format!("/api/v1/tenants/{a_tenant}/api-keys"), &[("X-API-Key", a_key.as_str())]);
    let a_key_id = a_keys["data"][0]["id"].as_i64().unwrap_or_else(|| panic!("A's keys: {a_keys}")).to_string();
    let (b_key, _) = tenant("bravo-tenant");
    let a_h = [("X-API-Key", a_key.as_str())];
    let created = |path: &str, body: Value| {
        let (status, _, reply) = call(port, "POST", path, &a_h, Some(&body));
        assert_eq!(status, 201, "POST {path}: {reply}");
        reply["data"]["id"].as_str().unwrap().to_string()
    };
    let kb = created("/api/v1/knowledge-bases", json!({"name": format!("alpha-kb-{MARK}"), "description": MARK}));
    let doc = created(
        &format!("/api/v1/knowledge-bases/{kb}/knowledge/manual"),
        json!({"title": format!("alpha-doc-{MARK}"), "content": format!("Backups run nightly to the {MARK} vault.")}),
    );
    assert_eq!(wait_parsed(port, &a_key, &doc)["parse_status"], "completed");
    let session =
        created("/api/v1/sessions", json!({"title": format!("alpha-session-{MARK}"), "knowledge_base_id": kb}));
    let model = created(
        "/api/v1/models",
        json!({"name": format!("alpha-model-{MARK}"), "type": "KnowledgeQA",
               "parameters": {"base_url": "http://127.0.0.1:9/v1", "provider": "openai"}}),
    );
    let (status, _, answer) = call(
        port,
        "POST",
        &format!("/api/v1/knowledge-chat/{session}"),
        &a_h,
        Some(&json!({"query": "when do backups run?"})),
    );
    assert!(status == 200 && answer.to_string().contains(MARK), "A's session has no answer: {status} {answer}");

    let h = Hostile {
        port,
        secrets: vec![
            MARK.into(),
            a_key.clone(),
            // Not A's tenant number: a small integer that answers hold anyway.
            kb.clone(),
            doc.clone(),
            session.clone(),
            model.clone(),
        ],
        a: TenantA {
            key: a_key.clone(),
            tenant: a_tenant,
            key_id: a_key_id,
            kb: kb.clone(),
            doc: doc.clone(),
            session,
            model,
        },
        b_key,
        sent: Cell::new(0),
        failures: RefCell::new(Vec::new()),
    };

    let bodies = hostile_bodies();
    for route in &routes {
        h.without_a_key(route);
        h.as_another_tenant(route);
        h.malformed_ids(route);
        h.hostile_bodies(route, &bodies);
        h.hostile_queries(route);
    }
    h.undeclared_methods(&routes);

    // What hyper answers itself, before the app sees the request (a request line over its
    // 65,534 bytes, raw non-ASCII in a path), has no body the app could shape; a 4xx still.
    for (case, target) in [
        ("a 70 KiB query string", format!("/api/v1/knowledge-bases?x={}", "a".repeat(70 << 10))),
        ("raw UTF-8 in the path", format!("/api/v1/knowledge/{}é", h.a.doc)),
    ] {
        let status = exchange(port, "GET", &target, &[("X-API-Key", a_key.as_str())], None).map(|r| r.status);
        assert!(matches!(status, Ok(400..=499)), "{case}: {status:?}");
    }

    // The routes that take an upload or a URL, found by what they answer to a valid one.
    let mut upload_routes = Vec::new();
    let mut url_routes = Vec::new();
    let control = format!("http://127.0.0.2:{r}/page");
    for route in routes.iter().filter(|r| r.method == "POST") {
        let target = h.owner_target(route);
        let (upload_type, upload) = multipart("probe-upload.md", b"# Probe\n\nAn upload probe about backups.\n");
        if let Some(reply) =
            h.call(h.owner(), "a valid upload", "POST", &target, Some((&upload_type, &upload)), Expect::Any)
            && reply.status == 201
            && String::from_utf8_lossy(&reply.body).contains("probe-upload.md")
        {
            upload_routes.push(route.path.clone());
        }
        let body = json!({ "url": control }).to_string();
        if let Some(reply) =
            h.call(h.owner(), "a valid URL", "POST", &target, Some(("application/json", body.as_bytes())), Expect::Any)
            && reply.status == 201
            && String::from_utf8_lossy(&reply.body).contains(&control)
        {
            let id: Value = serde_json::from_slice(&reply.body).unwrap();
            let id = id["data"]["id"].as_str().unwrap().to_string();
            let parsed = wait_parsed(port, &a_key, &id);
            assert_eq!(parsed["parse_status"], "completed", "the allow-listed control page was not read: {parsed}");
            url_routes.push(route.path.clone());
        }
    }
    assert!(!upload_routes.is_empty(), "no route took a valid upload: the upload cases would test nothing");
    assert!(url_routes.iter().any(|p| p.ends_with("/knowledge/url")), "no URL-import route found: {url_routes:?}");

    // 7: path-like and otherwise hostile file names: stored under a sanitised name inside
    // the storage folder, or refused with a 4xx.
    let abs_before = Path::new("/abs").exists();
    let names: Vec<String> = vec![
        "../../etc/passwd".into(),
        "..\\..\\win.ini".into(),
        "/abs/path.txt".into(),
        "a/../../../../escape.txt".into(),
        "%2e%2e%2fencoded.txt".into(),
        "nul\0byte.txt".into(),
        "ctrl\x01\x07\x1b[31m\x7f.txt".into(),
        "crlf\r\nContent-Type: text/html\r\n\r\n.txt".into(),
        "quote\"; name=\"other.txt".into(),
        // RFC 5987's encoded form, with a NUL in it.
        "x\"; filename*=UTF-8''nul%00encoded.txt; x=\"".into(),
        format!("{}.txt", "x".repeat(1000)),
        format!("{}.txt", "é".repeat(1000)),
        "..".into(),
        ".".into(),
        "".into(),
        "\u{202e}gnp.exe".into(),
        "CON".into(),
    ];
    for path in &upload_routes {
        let target = h.a_targets(&Route { path: path.clone(), method: "POST".into() }).swap_remove(0);
        for (n, name) in names.iter().enumerate() {
            let (content_type, body) = multipart(name, format!("Upload {n} about backups.\n").as_bytes());
            h.call(
                h.owner(),
                &format!("file name {name:?}"),
                "POST",
                &target,
                Some((&content_type, &body)),
                Expect::Any,
            );
        }
        // Over the JSON limit, within MAX_FILE_SIZE_MB: taken; over MAX_FILE_SIZE_MB: 413.
        let within = vec![b'y'; weknora_app::api::JSON_BODY_LIMIT + (256 << 10)];
        let (content_type, body) = multipart("within-limit.bin", &within);
        h.call(
            h.owner(),
            "upload over the JSON limit",
            "POST",
            &target,
            Some((&content_type, &body)),
            Expect::Only(&[201]),
        );
        let over = vec![b'y'; (MAX_FILE_SIZE_MB << 20) + (1 << 20) + 1];
        let (content_type, body) = multipart("over-limit.bin", &over);
        h.call(h.owner(), "upload over the limit", "POST", &target, Some((&content_type, &body)), Expect::Only(&[413]));
    }
    let oversized = &bodies[0];
    h.call(
        h.owner(),
        "JSON over the limit",
        "POST",
        "/api/v1/knowledge-bases",
        Some((&oversized.1, &oversized.2)),
        Expect::Only(&[413]),
    );

    // Nothing outside the storage folder; inside it, tenant/kb/document/safe-name only.
    assert_eq!(listing(outer.path()), BTreeSet::from(["inner".to_string()]), "written beside the storage folder");
    assert_eq!(listing(&outer.path().join("inner")), BTreeSet::from(["files".to_string()]));
    assert_eq!(Path::new("/abs").exists(), abs_before, "/abs was written");
    let stored = files_under(&files);
    assert!(stored.len() >= 2, "the uploads were not stored: {stored:?}");
    for file in &stored {
        let rel = file.strip_prefix(&files).unwrap();
        let parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        let name = parts.last().unwrap();
        let ok = parts.len() == 4
            && parts[..3].iter().all(|p| p.parse::<uuid::Uuid>().is_ok())
            && !matches!(name.as_str(), "." | "..")
            && name.len() <= 255
            && name.chars().all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_'))
            && !std::fs::symlink_metadata(file).unwrap().file_type().is_symlink();
        if !ok {
            h.fail("storage", &format!("{} is not tenant/kb/document/<safe name>", rel.display()));
        }
    }

    // 8: URL imports of private addresses, directly and through a redirect from an
    // allow-listed host: each document fails naming the guard; nothing reaches the targets.
    let mut imports = Vec::new();
    let redirects: Vec<String> = (0..hops.len()).map(|n| format!("http://127.0.0.2:{r}/hop/{n}")).collect();
    for path in &url_routes {
        let target = h.a_targets(&Route { path: path.clone(), method: "POST".into() }).swap_remove(0);
        for url in private.iter().chain(&redirects) {
            let body = json!({ "url": url }).to_string();
            let reply = h.call(
                h.owner(),
                &format!("URL {url}"),
                "POST",
                &target,
                Some(("application/json", body.as_bytes())),
                Expect::Any,
            );
            if let Some(reply) = reply.filter(|r| r.status == 201) {
                let body: Value = serde_json::from_slice(&reply.body).unwrap();
                imports.push((url.clone(), body["data"]["id"].as_str().unwrap().to_string()));
            }
        }
    }
    for (url, id) in &imports {
        let doc = wait_parsed(port, &a_key, id);
        let error = doc["error"].as_str().unwrap_or_default();
        if doc["parse_status"] != "failed" || !error.contains("private, loopback or link-local") {
            h.fail(&format!("URL {url}"), &format!("not refused as a private address: {doc}"));
        }
    }
    let reached = target.requests();
    assert!(reached.is_empty(), "a URL import reached a private address: {reached:?}");
    if let Some(target6) = &target6 {
        assert!(target6.requests().is_empty(), "a URL import reached [::1]: {:?}", target6.requests());
    }
    let hopped = redirector.requests();
    for n in 0..hops.len() {
        assert!(
            hopped.iter().any(|line| line.contains(&format!("/hop/{n} "))),
            "the allow-listed first hop {n} was never fetched, so its redirect tested nothing: {hopped:?}"
        );
    }

    // Tenant A's data is as it was. (Its session's title may be the one A's own
    // generate_title gave it from its question: that route retitles by design.)
    let retitled = "when do backups run?".to_string();
    for (path, field, value, or) in [
        (format!("/api/v1/knowledge-bases/{kb}"), "name", format!("alpha-kb-{MARK}"), None),
        (format!("/api/v1/knowledge/{doc}"), "title", format!("alpha-doc-{MARK}"), None),
        (format!("/api/v1/sessions/{}", h.a.session), "title", format!("alpha-session-{MARK}"), Some(retitled)),
        (format!("/api/v1/models/{}", h.a.model), "name", format!("alpha-model-{MARK}"), None),
    ] {
        let body = h.a_path(&path);
        let now = body.as_ref().and_then(|b| b["data"][field].as_str()).map(str::to_string);
        if now != Some(value.clone()) && now != or {
            h.fail(&path, &format!("tenant A's {field} is no longer {value}: {body:?}"));
        }
    }

    let failures = h.failures.borrow();
    let sent = h.sent.get();
    eprintln!(
        "{pairs} method+path pairs, {} upload and {} URL-import routes, {sent} requests, {:.1}s",
        upload_routes.len(),
        url_routes.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed:\n{}",
        failures.len(),
        failures.iter().take(200).cloned().collect::<Vec<_>>().join("\n")
    );
}
