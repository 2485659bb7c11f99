//! The operator's module graph, read from its source, against the layers `lib.rs` describes:
//! every module has a layer in `LAYERS`, no import runs up a layer, no module imports the one
//! that mounts it, no two modules depend on each other (directly or around a circle), only
//! commands know clap, no command names another command's clap arguments, and `lib.rs`
//! declares modules and nothing else.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

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

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// `src/backup/mod.rs` -> `backup`, `src/doctor/fix.rs` -> `doctor::fix`, `src/lib.rs` -> ``.
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

/// The modules a file names with `crate::` or `super::`, resolved against `modules` to the
/// deepest module they name (`crate::backup::take::take` -> `backup::take`).
fn references(module: &str, text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (start, base) in [("crate::", String::new()), ("super::", parent(module).to_string())] {
        for (at, _) in text.match_indices(start) {
            let rest = &text[at + start.len()..];
            // `crate::{a, b}` groups: take each name in the braces.
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
    /// Module -> its code: comments and unit tests left out.
    text: BTreeMap<String, String>,
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn graph() -> Graph {
    let src = src();
    let mut files = rust_files(&src);
    // main.rs is the `weknora` binary's own crate, a front end above the library.
    files.retain(|f| f.file_name().is_some_and(|n| n != "main.rs"));
    // A file's unit tests (an inline module, where `super` is the file itself) and its
    // comments are not part of the graph.
    let text: BTreeMap<String, String> = files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            let code: Vec<&str> = code.lines().filter(|l| !l.trim_start().starts_with("//")).collect();
            (module_of(&src, f), code.join("\n"))
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
