//! The operator's module graph, read from its source, against the layers `lib.rs` describes:
//! every module has a layer in `LAYERS`, no import runs up a layer, no module imports the one
//! that mounts it, no two modules depend on each other (directly or around a circle), only
//! commands know clap, no command names another command's clap arguments, and `lib.rs`
//! declares modules and nothing else.

use std::path::{Path, PathBuf};

use weknora_testkit::layout::ModuleGraph;

/// Every module of the library and its layer, bottom to top. A module may use its own layer
/// and the ones below, never one above.
const LAYERS: &[(&str, Layer)] = &[
    ("host", Layer::Ground),
    ("digest", Layer::Ground),
    ("report", Layer::Ground),
    ("utc", Layer::Ground),
    ("poll", Layer::Ground),
    ("confirm", Layer::Ground),
    ("disk", Layer::Ground),
    ("process", Layer::Ground),
    ("paths", Layer::Engines),
    ("dotenv", Layer::Engines),
    ("database", Layer::Engines),
    ("docker", Layer::Engines),
    ("containers", Layer::Engines),
    ("third_party", Layer::Engines),
    ("pg", Layer::Engines),
    ("swarm", Layer::Engines),
    ("compose", Layer::Stack),
    ("images", Layer::Stack),
    ("deep", Layer::Stack),
    ("doctor::probe", Layer::Stack),
    ("doctor::checks", Layer::Stack),
    ("doctor::fix", Layer::Stack),
    ("doctor::examine", Layer::Stack),
    ("doctor::setup", Layer::Stack),
    ("backup::archive", Layer::Stack),
    ("backup::take", Layer::Stack),
    ("backup::drill", Layer::Stack),
    ("backup::pitr", Layer::Stack),
    ("backup::retention", Layer::Stack),
    ("backup::schedule", Layer::Stack),
    ("cli", Layer::Commands),
    ("start", Layer::Commands),
    ("stack", Layer::Commands),
    ("upgrade", Layer::Commands),
    ("deploy", Layer::Commands),
    ("reindex", Layer::Commands),
    ("backup", Layer::Commands),
    ("doctor", Layer::Commands),
    ("migrate", Layer::Commands),
    ("ollama", Layer::Commands),
    ("bundle", Layer::Commands),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Layer {
    /// L0: the front end's host, digests, the table of checks, time, waits, confirmations.
    Ground,
    /// L1: paths, env files, Docker, PostgreSQL, third-party images, Swarm.
    Engines,
    /// L2: the stack's mechanisms (compose, images, doctor's facts and verdicts, backups).
    Stack,
    /// L3: the commands (clap arguments and what only they do).
    Commands,
}

fn layer(module: &str) -> Layer {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l).unwrap_or_else(|| {
        panic!("`{module}` has no layer: add it to LAYERS in crates/operator/tests/layout.rs (and to lib.rs's list)")
    })
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn graph() -> ModuleGraph {
    ModuleGraph::read(&src())
}

#[test]
fn the_graph_is_read_from_the_source() {
    let g = graph();
    assert!(g.uses["start"].contains("compose"), "{:?}", g.uses["start"]);
    assert!(g.uses["backup::schedule"].contains("backup::take"), "{:?}", g.uses["backup::schedule"]);
    assert!(g.uses["cli"].contains("backup") && g.uses["cli"].contains("start"), "{:?}", g.uses["cli"]);
    assert!(g.uses.len() > 30, "{:?}", g.uses.keys());
}

#[test]
fn every_module_has_a_layer_and_every_layer_a_module() {
    let g = graph();
    for module in g.uses.keys().filter(|m| !m.is_empty()) {
        layer(module);
    }
    for (module, _) in LAYERS {
        assert!(g.uses.contains_key(*module), "LAYERS names `{module}`, which src/ does not have");
    }
}

#[test]
fn lib_rs_declares_modules_only() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    for line in lib.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("//")) {
        let declaration = line
            .strip_suffix(';')
            .and_then(|l| ["pub mod ", "pub(crate) mod ", "mod "].iter().find_map(|p| l.strip_prefix(p)));
        assert!(
            declaration.is_some_and(|name| name.chars().all(|c| c.is_alphanumeric() || c == '_')),
            "lib.rs holds module declarations only; `{line}` belongs in a module of its layer"
        );
    }
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
fn no_import_runs_up_a_layer() {
    for (module, deps) in graph().uses.iter().filter(|(m, _)| !m.is_empty()) {
        for dep in deps.iter().filter(|d| !d.is_empty()) {
            assert!(
                layer(dep) <= layer(module),
                "`{module}` ({:?}) imports `{dep}` ({:?}), a layer above it: move what it needs down, \
                 or the module up (crates/operator/src/lib.rs names the layers)",
                layer(module),
                layer(dep)
            );
        }
    }
}

#[test]
fn only_commands_know_clap() {
    for (module, text) in graph().text.iter().filter(|(m, _)| !m.is_empty()) {
        if layer(module) < Layer::Commands {
            assert!(
                !text.contains("clap"),
                "`{module}` ({:?}) uses clap: arguments belong to the commands; give them a procedure to call",
                layer(module)
            );
        }
    }
}

#[test]
fn commands_never_name_each_others_clap_arguments() {
    let g = graph();
    // The types each command derives clap for: the item after `#[derive(...clap...)]` or
    // `#[derive(Subcommand)]`-style lines.
    let mut clap_types: Vec<(String, String)> = Vec::new();
    for (module, text) in &g.text {
        let mut derives = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with("#[derive(") {
                derives = ["clap::", "Subcommand", "Args", "Parser"].iter().any(|d| line.contains(d));
            } else if derives && !line.starts_with("#[") {
                let item = ["pub struct ", "pub enum ", "struct ", "enum "].iter().find_map(|p| line.strip_prefix(p));
                if let Some(item) = item {
                    let name: String = item.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                    clap_types.push((module.clone(), name));
                }
                derives = false;
            }
        }
    }
    assert!(clap_types.iter().any(|(m, t)| m == "start" && t == "Start"), "{clap_types:?}");
    for (module, text) in g.text.iter().filter(|(m, _)| !m.is_empty() && *m != "cli") {
        for (owner, name) in clap_types.iter().filter(|(o, _)| o != module) {
            let last = owner.rsplit("::").next().unwrap();
            let named = text
                .match_indices(&format!("{last}::{name}"))
                .any(|(at, found)| !text[at + found.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_'));
            let imported = text.lines().any(|l| {
                l.trim_start().starts_with(&format!("use crate::{owner}::"))
                    && l.split(|c: char| !c.is_alphanumeric() && c != '_').any(|w| w == name)
            });
            assert!(
                !named && !imported,
                "`{module}` names `{owner}::{name}`, another command's clap arguments: share a procedure instead"
            );
        }
    }
}
