//! The app's module graph, read from its source: no module imports the one that mounts
//! it, no two modules depend on each other (directly or around a circle), nothing below
//! the HTTP layer depends on it or knows HTTP's types, no HTTP feature imports another,
//! and no HTTP handler writes SQL or sends Redis commands of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

mod support;

/// `src/api/mod.rs` -> `api`, `src/db/jobs.rs` -> `db::jobs`, `src/lib.rs` -> `` (the root).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).filter(|p| !matches!(*p, "mod" | "lib")).collect();
    parts.join("::")
}

fn parent(module: &str) -> &str {
    module.rsplit_once("::").map_or("", |(p, _)| p)
}

/// Whether `a` is `b` or inside it.
fn within(a: &str, b: &str) -> bool {
    b.is_empty() || a == b || a.starts_with(&format!("{b}::"))
}

/// The module paths a file names with `crate::` or `super::`, resolved against `modules`
/// to the deepest module they name (`crate::db::jobs::Job` -> `db::jobs`).
fn references(module: &str, text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (start, base) in [("crate::", String::new()), ("super::", parent(module).to_string())] {
        for (at, _) in text.match_indices(start) {
            // `crate::{a, b}` groups: take each name in the braces.
            let rest = &text[at + start.len()..];
            let heads: Vec<String> = if let Some(group) = rest.strip_prefix('{') {
                let inner = &group[..group.find('}').unwrap_or(0)];
                inner.split(',').map(|s| s.trim().to_string()).collect()
            } else {
                vec![rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect()]
            };
            for head in heads {
                let mut path = base.clone();
                let mut best = base.clone();
                for segment in head.split("::").filter(|s| !s.is_empty()) {
                    path = if path.is_empty() { segment.to_string() } else { format!("{path}::{segment}") };
                    if modules.contains(&path) {
                        best = path.clone();
                    }
                }
                found.insert(best);
            }
        }
    }
    found.remove(module);
    found
}

struct Graph {
    /// Module -> the modules it uses (its own submodules left out: those it mounts).
    uses: BTreeMap<String, BTreeSet<String>>,
    text: BTreeMap<String, String>,
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = support::rust_files(&src);
    // main.rs is the binary's own crate root, outside the library's graph.
    files.retain(|f| f.file_name().is_some_and(|n| n != "main.rs"));
    // A file's unit tests (an inline module, where `super` is the file itself) are not part
    // of the graph: everything from `#[cfg(test)]` on is left out.
    let text: BTreeMap<String, String> = files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default().to_string();
            (module_of(&src, f), code)
        })
        .collect();
    let modules: BTreeSet<String> = text.keys().cloned().collect();
    let uses = text
        .iter()
        .map(|(m, t)| {
            let deps = references(m, t, &modules).into_iter().filter(|d| !within(d, m)).collect();
            (m.clone(), deps)
        })
        .collect();
    Graph { uses, text }
}

#[test]
fn the_graph_is_read_from_the_source() {
    let g = graph();
    assert!(g.uses["ingest"].contains("db::jobs"), "{:?}", g.uses["ingest"]);
    assert!(g.uses["api::documents"].contains("api::extract"), "{:?}", g.uses["api::documents"]);
    assert!(g.uses["api::documents"].contains("ingest"), "{:?}", g.uses["api::documents"]);
    assert!(g.uses["api::documents"].contains("state"));
    assert!(g.uses["api::error"].contains("storage"), "{:?}", g.uses["api::error"]);
    assert!(g.uses.len() > 20, "{:?}", g.uses.keys());
}

#[test]
fn no_module_imports_the_one_that_mounts_it() {
    for (module, deps) in graph().uses {
        for dep in deps {
            assert!(!within(&module, &dep), "`{module}` imports `{dep}`, which mounts it");
        }
    }
}

#[test]
fn the_module_graph_has_no_cycle() {
    let g = graph();
    // Depth-first search; a module met again while still on the path closes a cycle.
    fn visit(m: &str, g: &Graph, path: &mut Vec<String>, done: &mut BTreeSet<String>) {
        if done.contains(m) {
            return;
        }
        if let Some(i) = path.iter().position(|p| p == m) {
            panic!("cycle: {} -> {m}", path[i..].join(" -> "));
        }
        path.push(m.to_string());
        for dep in g.uses.get(m).into_iter().flatten() {
            visit(dep, g, path, done);
        }
        path.pop();
        done.insert(m.to_string());
    }
    let mut done = BTreeSet::new();
    for m in g.uses.keys() {
        visit(m, &g, &mut Vec::new(), &mut done);
    }
}

#[test]
fn only_main_depends_on_the_http_layer() {
    for (module, deps) in graph().uses {
        if !within(&module, "api") {
            assert!(!deps.iter().any(|d| within(d, "api")), "`{module}` depends on the HTTP layer: {deps:?}");
        }
    }
}

#[test]
fn the_data_layer_depends_on_nothing_above_it() {
    for (module, deps) in graph().uses {
        if within(&module, "db") {
            for dep in deps {
                assert!(within(&dep, "db") || dep == "keys", "`{module}` depends on `{dep}`");
            }
        }
    }
}

/// The code of a file, comments left out.
fn code(text: &str) -> String {
    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

#[test]
fn nothing_below_the_http_layer_knows_http() {
    // What only the HTTP layer answers with: its error type, axum, status codes.
    const HTTP: [&str; 4] = ["ApiError", "axum::", "StatusCode", "IntoResponse"];
    for (module, text) in graph().text {
        if !within(&module, "api") {
            for word in HTTP {
                assert!(
                    !code(&text).contains(word),
                    "`{module}` uses `{word}`: return an error of its own and map it in api/error.rs"
                );
            }
        }
    }
}

/// The HTTP modules every feature may use; every other module under `api` is a feature.
const SHARED: [&str; 4] = ["api::body", "api::error", "api::extract", "api::views"];

#[test]
fn no_http_feature_imports_another() {
    let g = graph();
    for (module, deps) in &g.uses {
        if !within(module, "api") || module == "api" {
            continue;
        }
        for dep in deps.iter().filter(|d| within(d, "api")) {
            assert!(
                SHARED.contains(&dep.as_str()),
                "`{module}` imports `{dep}`: move what they share to one of {SHARED:?} (or below the HTTP layer)"
            );
        }
    }
    // And the shared modules import no feature.
    for shared in SHARED {
        for dep in g.uses[shared].iter().filter(|d| within(d, "api")) {
            assert!(SHARED.contains(&dep.as_str()), "`{shared}` imports the feature `{dep}`");
        }
    }
}

#[test]
fn no_handler_writes_sql_or_calls_redis() {
    const INFRASTRUCTURE: [&str; 9] = [
        "\"SELECT ",
        "\"INSERT ",
        "\"UPDATE ",
        "\"DELETE ",
        "\"WITH ",
        "sqlx::query",
        "redis::cmd",
        "redis::pipe",
        "query_async",
    ];
    for (module, text) in graph().text {
        if within(&module, "api") {
            for call in INFRASTRUCTURE {
                assert!(
                    !text.contains(call),
                    "`{module}` calls the database or Redis itself (`{call}`): move it to db/ or cache"
                );
            }
        }
    }
}
