//! A crate's module graph, read from its source, for the layout tests that guard each
//! crate's architecture (`crates/operator/tests/layout.rs`, `services/app/tests/layout.rs`).
//!
//! A module is a file under `src/` (`src/backup/mod.rs` is `backup`, `src/db/jobs.rs` is
//! `db::jobs`, `src/lib.rs` the root ``); it uses the modules it names with `crate::` or
//! `super::`. `main.rs` (the binary's own crate), comment lines and everything from a
//! file's `#[cfg(test)]` on are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub struct ModuleGraph {
    /// Module -> the modules it uses (its own submodules left out: those it mounts).
    pub uses: BTreeMap<String, BTreeSet<String>>,
    /// Module -> its code: comment lines and unit tests left out.
    pub text: BTreeMap<String, String>,
}

impl ModuleGraph {
    /// The graph of the library under `src`.
    pub fn read(src: &Path) -> ModuleGraph {
        let files = rust_files(src).into_iter().filter(|f| f.file_name().is_some_and(|n| n != "main.rs"));
        let text: BTreeMap<String, String> = files
            .map(|f| {
                let text = std::fs::read_to_string(&f).unwrap();
                let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                let code: Vec<&str> = code.lines().filter(|l| !l.trim_start().starts_with("//")).collect();
                (module_of(src, &f), code.join("\n"))
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
        ModuleGraph { uses, text }
    }

    /// Panics naming the module and the one that mounts it, when one imports its parent.
    pub fn assert_no_module_imports_its_parent(&self) {
        for (module, deps) in &self.uses {
            for dep in deps {
                assert!(!within(module, dep), "`{module}` imports `{dep}`, which mounts it");
            }
        }
    }

    /// Panics naming the circle, when two modules depend on each other directly or around one.
    pub fn assert_no_cycle(&self) {
        // Depth-first search; a module met again while still on the path closes a cycle.
        fn visit(m: &str, g: &ModuleGraph, path: &mut Vec<String>, done: &mut BTreeSet<String>) {
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
        for m in self.uses.keys() {
            visit(m, self, &mut Vec::new(), &mut done);
        }
    }
}

/// Whether module `a` is `b` or inside it (everything is inside the root ``).
pub fn within(a: &str, b: &str) -> bool {
    b.is_empty() || a == b || a.starts_with(&format!("{b}::"))
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

fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).filter(|p| !matches!(*p, "mod" | "lib")).collect();
    parts.join("::")
}

fn parent(module: &str) -> &str {
    module.rsplit_once("::").map_or("", |(p, _)| p)
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
