//! The app's module graph, read from its source: no module imports the one that mounts
//! it, no two modules depend on each other (directly or around a circle), nothing below
//! the HTTP layer depends on it or knows HTTP's types, no HTTP feature imports another,
//! and no HTTP handler writes SQL or sends Redis commands of its own.

use std::path::Path;

use weknora_testkit::layout::{ModuleGraph, within};

fn graph() -> ModuleGraph {
    ModuleGraph::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
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
    graph().assert_no_module_imports_its_parent();
}

#[test]
fn the_module_graph_has_no_cycle() {
    graph().assert_no_cycle();
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

#[test]
fn nothing_below_the_http_layer_knows_http() {
    // What only the HTTP layer answers with: its error type, axum, status codes.
    const HTTP: [&str; 4] = ["ApiError", "axum::", "StatusCode", "IntoResponse"];
    for (module, text) in graph().text {
        if !within(&module, "api") {
            for word in HTTP {
                assert!(
                    !text.contains(word),
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
