//! `cargo xtask ci`: everything CI runs, in order, each step run even when an earlier one
//! failed, ending with one `ci: N passed, N failed` line and a non-zero exit on any failure.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context, Result};

use crate::paths;

#[derive(clap::Args)]
pub struct Ci {
    /// Leave out the tests that need a Docker engine (`#[ignore]`d in plain `cargo test`).
    #[arg(long)]
    no_docker: bool,
}

/// One step's outcome: individual tests for test steps, the step itself otherwise.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub passed: u64,
    pub failed: u64,
}

struct Step {
    name: &'static str,
    args: Vec<String>,
    /// Count the tests it reports rather than the step as one.
    counts_tests: bool,
}

impl Ci {
    pub fn run(self) -> Result<ExitCode> {
        // A fresh machine is set up first: the engine, and every tool the tests use.
        weknora_operator::host::runtime()?.block_on(crate::doctor::set_up("ci"))?;
        let mut tests = words("test --workspace --locked --no-fail-fast --");
        if !self.no_docker {
            // Tests that need Docker are `#[ignore]`d so plain `cargo test` works anywhere;
            // CI has an engine (`ci` set it up first) and runs them all.
            tests.push("--include-ignored".into());
        }
        let steps = [
            Step { name: "fmt", args: words("fmt --all --check"), counts_tests: false },
            // Every member, the docreader's fuzz targets included (so they never rot).
            Step {
                name: "clippy",
                args: words("clippy --workspace --all-targets --locked -- -D warnings"),
                counts_tests: false,
            },
            Step { name: "tests", args: tests, counts_tests: true },
        ];
        // Long tests note their phases here (weknora_testkit::Phases); printed at the end.
        let phases = paths::project_root().join("target/ci-phases.log");
        let _ = std::fs::remove_file(&phases);
        let mut total = Tally::default();
        let mut summary = Vec::new();
        let mut failures = Failures::default();
        for step in &steps {
            eprintln!("==> ci: {} (cargo {})", step.name, step.args.join(" "));
            let started = Instant::now();
            let (success, reported) =
                run_cargo(&step.args, &phases, &mut failures).with_context(|| format!("running step {}", step.name))?;
            let tally = step_tally(step.counts_tests, success, reported);
            total.passed += tally.passed;
            total.failed += tally.failed;
            let status = if success && tally.failed == 0 { "ok" } else { "FAIL" };
            summary.push(format!(
                "  {status:4}  {:7} {:>4}s  {} passed, {} failed",
                step.name,
                started.elapsed().as_secs(),
                tally.passed,
                tally.failed
            ));
        }
        if let Ok(noted) = std::fs::read_to_string(&phases) {
            eprintln!("\nwhere the long tests spent their time:\n{}", noted.trim_end());
        }
        // A long log is cut in the middle where CI shows it; the reasons go near its end.
        for (name, lines) in &failures.tests {
            let from = lines.len().saturating_sub(FAILURE_TAIL);
            eprintln!("\n{name} failed; the end of what it printed:\n{}", lines[from..].join("\n"));
        }
        eprintln!("\nci summary:\n{}", summary.join("\n"));
        println!("ci: {} passed, {} failed", total.passed, total.failed);
        Ok(if total.failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    }
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// Runs cargo with stdout streamed through (and scanned for libtest's result lines).
/// Tests note their phases in `phases` (`weknora_testkit::PHASES_FILE_VAR`).
fn run_cargo(args: &[String], phases: &std::path::Path, failures: &mut Failures) -> Result<(bool, Tally)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut child = Command::new(cargo).args(args).env("WEKNORA_TEST_PHASES", phases).stdout(Stdio::piped()).spawn()?;
    let mut tally = Tally::default();
    let stdout = std::io::stdout();
    let started = Instant::now();
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line?;
        failures.feed(&line);
        if let Some(t) = parse_test_result(&line) {
            tally.passed += t.passed;
            tally.failed += t.failed;
        }
        // When each test ended, counted from the step's start: where CI's time goes.
        if line.starts_with("test ") && line.contains(" ... ") {
            writeln!(stdout.lock(), "{line}  [{}s]", started.elapsed().as_secs())?;
        } else {
            writeln!(stdout.lock(), "{line}")?;
        }
    }
    Ok((child.wait()?.success(), tally))
}

/// How many of a failed test's last output lines the end of the log repeats.
const FAILURE_TAIL: usize = 25;

/// What each failed test printed: libtest's `---- name stdout ----` sections, which run
/// until the next section or its `failures:` list.
#[derive(Default)]
struct Failures {
    tests: Vec<(String, Vec<String>)>,
    in_section: bool,
}

impl Failures {
    fn feed(&mut self, line: &str) {
        if let Some(name) = line.strip_prefix("---- ").and_then(|l| l.strip_suffix(" stdout ----")) {
            self.tests.push((name.to_string(), Vec::new()));
            self.in_section = true;
        } else if line == "failures:" {
            self.in_section = false;
        } else if let (true, Some((_, lines))) = (self.in_section, self.tests.last_mut()) {
            lines.push(line.to_string());
        }
    }
}

/// A step's contribution to the total. A test step that failed without any failing
/// test did not build: that counts as one failure, never as zero.
fn step_tally(counts_tests: bool, success: bool, reported: Tally) -> Tally {
    match (counts_tests, success) {
        (true, true) => reported,
        (true, false) => Tally { passed: reported.passed, failed: reported.failed.max(1) },
        (false, true) => Tally { passed: 1, failed: 0 },
        (false, false) => Tally { passed: 0, failed: 1 },
    }
}

/// Reads libtest's `test result: ok. 12 passed; 0 failed; 3 ignored; ...` line.
pub fn parse_test_result(line: &str) -> Option<Tally> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let number_before = |word: &str| -> Option<u64> {
        rest.split(';').find_map(|part| part.trim().strip_suffix(word)?.trim().rsplit(' ').next()?.parse().ok())
    };
    Some(Tally { passed: number_before(" passed")?, failed: number_before(" failed")? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libtest_result_lines() {
        let ok = "test result: ok. 12 passed; 0 failed; 3 ignored; 0 measured; 0 filtered out; finished in 0.01s";
        assert_eq!(parse_test_result(ok), Some(Tally { passed: 12, failed: 0 }));
        let bad = "test result: FAILED. 7 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.20s";
        assert_eq!(parse_test_result(bad), Some(Tally { passed: 7, failed: 2 }));
        assert_eq!(parse_test_result("running 3 tests"), None);
        assert_eq!(parse_test_result("test result: garbage"), None);
    }

    #[test]
    fn keeps_what_each_failed_test_printed() {
        let mut f = Failures::default();
        let log = "test a ... FAILED\n\nfailures:\n\n---- a stdout ----\nthread 'a' panicked\nwhy\n\n\
                   ---- b stdout ----\nother\n\nfailures:\n    a\n    b\n\ntest result: FAILED.";
        log.lines().for_each(|l| f.feed(l));
        let names: Vec<_> = f.tests.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(f.tests[0].1, ["thread 'a' panicked", "why", ""]);
        assert_eq!(f.tests[1].1, ["other", ""]);
    }

    #[test]
    fn a_test_step_that_does_not_build_is_a_failure() {
        assert_eq!(step_tally(true, false, Tally::default()), Tally { passed: 0, failed: 1 });
        assert_eq!(step_tally(true, false, Tally { passed: 5, failed: 2 }), Tally { passed: 5, failed: 2 });
        assert_eq!(step_tally(true, true, Tally { passed: 5, failed: 0 }), Tally { passed: 5, failed: 0 });
        assert_eq!(step_tally(false, true, Tally::default()), Tally { passed: 1, failed: 0 });
        assert_eq!(step_tally(false, false, Tally::default()), Tally { passed: 0, failed: 1 });
    }
}
