//! `cargo xtask ci`: everything CI runs, in order, each step run even when an earlier one
//! failed, ending with one `ci: N passed, N failed` line and a non-zero exit on any failure.
//!
//! The tests run under nextest's `ci` profile (.config/nextest.toml): every tier, the stack
//! tier one test at a time beside the others. Results are read from its JUnit report.

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::paths;

#[derive(clap::Args)]
pub struct Ci {
    /// Leave out the tests that need a Docker engine (the stack tier and the tests that start
    /// containers); they then skip, as they do on a machine without one.
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
    /// Count the tests in nextest's JUnit report rather than the step as one.
    counts_tests: bool,
}

/// Where nextest's `ci` profile writes its JUnit report (`[profile.ci.junit]`).
const JUNIT: &str = "target/nextest/ci/junit.xml";

impl Ci {
    pub fn run(self) -> Result<ExitCode> {
        // A fresh machine is set up first: the engine, and every tool the tests use.
        weknora_operator::host::runtime()?.block_on(crate::doctor::set_up("ci"))?;
        ensure_nextest()?;
        let mut tests = words("nextest run --workspace --locked --profile ci --no-fail-fast");
        if self.no_docker {
            tests.extend(["-E".to_string(), "not group(stack)".to_string()]);
        }
        // (The workspace has no doc tests, which nextest would not run: `cargo test --doc`.)
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
        let root = paths::project_root();
        // Long tests note their phases here (weknora_testkit::Phases); printed at the end.
        let phases = root.join("target/ci-phases.log");
        let junit = root.join(JUNIT);
        let _ = std::fs::remove_file(&phases);
        // Tests note here a need no command can provide on this machine (testkit's need.rs).
        let skips = root.join("target/ci-skips.log");
        let _ = std::fs::remove_file(&skips);
        let mut total = Tally::default();
        let mut summary = Vec::new();
        let mut report = Report::default();
        for step in &steps {
            eprintln!("==> ci: {} (cargo {})", step.name, step.args.join(" "));
            let started = Instant::now();
            if step.counts_tests {
                let _ = std::fs::remove_file(&junit);
            }
            let success = run_cargo(&step.args, &phases, &skips, self.no_docker, step.counts_tests)
                .with_context(|| format!("running step {}", step.name))?;
            let reported = if step.counts_tests {
                report = match std::fs::read_to_string(&junit) {
                    Ok(xml) => Report::parse(&xml).with_context(|| format!("reading {}", junit.display()))?,
                    Err(_) => Report::default(),
                };
                report.tally()
            } else {
                Tally::default()
            };
            if step.counts_tests {
                stop_shared_stack(&root);
            }
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
        eprintln!("\nwhere the tests spent their time (per test binary; the stack tier ran one test at a time):");
        for (binary, seconds, count) in report.time_per_binary() {
            eprintln!("  {seconds:>6.0} s  {binary} ({count} tests)");
        }
        let long: Vec<String> = report
            .cases
            .iter()
            .filter(|c| c.seconds >= LONG_TEST_SECONDS)
            .map(|c| format!("  {:>6.0} s  {} {}", c.seconds, c.binary, c.name))
            .collect();
        if !long.is_empty() {
            eprintln!("\ntests of {LONG_TEST_SECONDS:.0} s or more:\n{}", long.join("\n"));
        }
        if let Ok(noted) = std::fs::read_to_string(&phases) {
            eprintln!("\nwhere the long tests spent their time:\n{}", noted.trim_end());
        }
        // A long log is cut in the middle where CI shows it; the reasons go near its end.
        for case in report.cases.iter().filter(|c| c.failed) {
            let lines: Vec<&str> = case.output.lines().collect();
            let from = lines.len().saturating_sub(FAILURE_TAIL);
            eprintln!(
                "\n{} {} failed ({}); the end of what it printed:\n{}",
                case.binary,
                case.name,
                case.reason,
                lines[from..].join("\n")
            );
        }
        if let Ok(noted) = std::fs::read_to_string(&skips) {
            eprintln!("\nnot run on this machine (what they need, no command here can provide):\n{}", noted.trim_end());
        }
        eprintln!("\nci summary:\n{}", summary.join("\n"));
        println!("ci: {} passed, {} failed", total.passed, total.failed);
        Ok(if total.failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    }
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// The tests run under nextest; a machine without it gets it the way doctor installs
/// sqlx-cli.
fn ensure_nextest() -> Result<()> {
    let has = |c: &mut Command| c.output().is_ok_and(|o| o.status.success());
    if has(Command::new(cargo()).args(["nextest", "--version"])) {
        return Ok(());
    }
    eprintln!("==> ci: cargo-nextest is missing; installing it (cargo install cargo-nextest --locked)");
    if !has(Command::new(cargo()).args(["install", "cargo-nextest", "--locked"])) {
        bail!(
            "cargo-nextest is missing and `cargo install cargo-nextest --locked` failed: install it, then run ci again"
        );
    }
    Ok(())
}

/// Where stack_live's `e2e_*` tests record the stack they share (its `SHARED_STACK_DIR`).
const SHARED_STACK: &str = "target/e2e-stack";

/// Stops the stack the `e2e_*` tests shared: their last test stops it, but a run that failed
/// before may have left it.
fn stop_shared_stack(root: &Path) {
    let recorded = root.join(SHARED_STACK).join("env");
    let Ok(text) = std::fs::read_to_string(&recorded) else { return };
    let env: Vec<(&str, &str)> = text.lines().filter_map(|l| l.split_once('=')).collect();
    // The binary the test step built: this process's own file may have been replaced by it.
    let xtask = root.join("target/debug/xtask");
    let stopped = Command::new(&xtask).args(["stop", "--volumes", "--yes"]).envs(env).status();
    match stopped {
        Ok(s) if s.success() => {
            let _ = std::fs::remove_file(&recorded);
        }
        Ok(_) => eprintln!("ci: could not stop the tests' shared stack ({})", recorded.display()),
        Err(e) => eprintln!("ci: could not run {} to stop the tests' shared stack: {e}", xtask.display()),
    }
}

/// Runs cargo with its output passed through. Tests note their phases in `phases`
/// (`weknora_testkit::PHASES_FILE_VAR`) and run as under CI: a test whose need is missing
/// fails rather than skips (`weknora_testkit::require!`), unless Docker was left out; one
/// that needs what nothing here provides notes its skip in `skips` (`SKIPS_FILE_VAR`).
fn run_cargo(args: &[String], phases: &Path, skips: &Path, no_docker: bool, tests: bool) -> Result<bool> {
    let mut command = Command::new(cargo());
    command.args(args).env("WEKNORA_TEST_PHASES", phases).env("WEKNORA_TEST_SKIPS", skips);
    if tests && !no_docker {
        command.env("CI", "true");
    }
    Ok(command.status()?.success())
}

/// Tests that took at least this long are listed by name.
const LONG_TEST_SECONDS: f64 = 60.0;

/// How many of a failed test's last output lines the end of the log repeats.
const FAILURE_TAIL: usize = 25;

/// One `<testcase>` of nextest's JUnit report.
#[derive(Debug, Default, Clone, PartialEq)]
struct Case {
    /// The test binary, `<testsuite name>` (`xtask::stack_live`).
    binary: String,
    name: String,
    seconds: f64,
    failed: bool,
    /// The `<failure>`/`<error>` message.
    reason: String,
    /// What it printed (`<system-out>` then `<system-err>`; kept for failed tests).
    output: String,
}

/// The test cases of a JUnit report.
#[derive(Debug, Default)]
struct Report {
    cases: Vec<Case>,
}

impl Report {
    fn parse(xml: &str) -> Result<Report> {
        use quick_xml::events::{BytesStart, Event};
        fn attr(e: &BytesStart<'_>, key: &str) -> Result<Option<String>> {
            for a in e.attributes() {
                let a = a?;
                if a.key.as_ref() == key {
                    return Ok(Some(a.normalized_value(quick_xml::XmlVersion::Implicit1_0)?.into_owned()));
                }
            }
            Ok(None)
        }
        let mut reader = quick_xml::Reader::from_str(xml);
        let mut cases = Vec::new();
        let mut suite = String::new();
        let mut case: Option<Case> = None;
        // Inside <system-out>/<system-err> of the current case.
        let mut in_output = false;
        loop {
            match reader.read_event()? {
                Event::Start(e) | Event::Empty(e) if e.name().as_ref() == "testsuite" => {
                    suite = attr(&e, "name")?.unwrap_or_default();
                }
                Event::Start(e) if e.name().as_ref() == "testcase" => {
                    case = Some(Case::start(&suite, attr(&e, "name")?, attr(&e, "time")?));
                }
                Event::Empty(e) if e.name().as_ref() == "testcase" => {
                    cases.push(Case::start(&suite, attr(&e, "name")?, attr(&e, "time")?));
                }
                Event::Start(e) | Event::Empty(e) if matches!(e.name().as_ref(), "failure" | "error") => {
                    if let Some(case) = case.as_mut() {
                        case.failed = true;
                        case.reason = attr(&e, "message")?.or(attr(&e, "type")?).unwrap_or_default();
                    }
                }
                Event::Start(e) if matches!(e.name().as_ref(), "system-out" | "system-err") => in_output = true,
                Event::End(e) if matches!(e.name().as_ref(), "system-out" | "system-err") => {
                    in_output = false;
                    if let Some(case) = case.as_mut().filter(|c| !c.output.ends_with('\n')) {
                        case.output.push('\n');
                    }
                }
                Event::Text(t) if in_output => {
                    if let Some(case) = case.as_mut() {
                        case.output.push_str(&t.xml10_content());
                    }
                }
                Event::CData(t) if in_output => {
                    if let Some(case) = case.as_mut() {
                        case.output.push_str(&t.xml10_content());
                    }
                }
                Event::GeneralRef(r) if in_output => {
                    if let Some(case) = case.as_mut() {
                        let reference = format!("&{};", r.xml10_content());
                        case.output
                            .push_str(&quick_xml::escape::unescape(&reference).unwrap_or(reference.as_str().into()));
                    }
                }
                Event::End(e) if e.name().as_ref() == "testcase" => cases.extend(case.take()),
                Event::Eof => break,
                _ => {}
            }
        }
        Ok(Report { cases })
    }

    fn tally(&self) -> Tally {
        let failed = self.cases.iter().filter(|c| c.failed).count() as u64;
        Tally { passed: self.cases.len() as u64 - failed, failed }
    }

    /// (binary, seconds, tests) for each test binary, the longest first.
    fn time_per_binary(&self) -> Vec<(String, f64, usize)> {
        let mut per: Vec<(String, f64, usize)> = Vec::new();
        for case in &self.cases {
            match per.iter_mut().find(|(b, _, _)| *b == case.binary) {
                Some((_, seconds, count)) => {
                    *seconds += case.seconds;
                    *count += 1;
                }
                None => per.push((case.binary.clone(), case.seconds, 1)),
            }
        }
        per.sort_by(|a, b| b.1.total_cmp(&a.1));
        per
    }
}

impl Case {
    fn start(binary: &str, name: Option<String>, time: Option<String>) -> Case {
        Case {
            binary: binary.to_string(),
            name: name.unwrap_or_default(),
            seconds: time.and_then(|t| t.parse().ok()).unwrap_or(0.0),
            ..Case::default()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of nextest's JUnit report (0.9.143).
    const JUNIT_REPORT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="nextest-run" tests="3" failures="1" errors="0" uncounted-tests="0" timestamp="2026-12-07T14:00:00.000+00:00" time="130.5">
    <testsuite name="xtask::stack_live" tests="2" disabled="0" errors="0" failures="1">
        <testcase name="e2e_start" classname="xtask::stack_live" timestamp="2026-12-07T14:00:00.000+00:00" time="120.25">
        </testcase>
        <testcase name="e2e_chat" classname="xtask::stack_live" timestamp="2026-12-07T14:02:00.000+00:00" time="10.0">
            <failure message="test failed with exit code 101" type="test failure with exit code 101">thread 'e2e_chat' panicked</failure>
            <system-out>running 1 test
</system-out>
            <system-err>thread 'e2e_chat' panicked at xtask/tests/stack_live.rs:10:5:
assertion failed: a &lt; b &amp;&amp; &quot;x&quot;
</system-err>
        </testcase>
    </testsuite>
    <testsuite name="weknora-operator" tests="1" disabled="0" errors="0" failures="0">
        <testcase name="parses" classname="weknora-operator" timestamp="2026-12-07T14:00:00.000+00:00" time="0.25"/>
    </testsuite>
</testsuites>
"#;

    #[test]
    fn reads_nextests_junit_report() {
        let report = Report::parse(JUNIT_REPORT).unwrap();
        assert_eq!(report.tally(), Tally { passed: 2, failed: 1 });
        let names: Vec<_> = report.cases.iter().map(|c| (c.binary.as_str(), c.name.as_str(), c.failed)).collect();
        assert_eq!(
            names,
            [
                ("xtask::stack_live", "e2e_start", false),
                ("xtask::stack_live", "e2e_chat", true),
                ("weknora-operator", "parses", false)
            ]
        );
        let chat = &report.cases[1];
        assert_eq!(chat.reason, "test failed with exit code 101");
        assert!(chat.output.starts_with("running 1 test\n"), "{}", chat.output);
        assert!(chat.output.ends_with("assertion failed: a < b && \"x\"\n"), "{}", chat.output);
        assert_eq!(
            report.time_per_binary(),
            [("xtask::stack_live".to_string(), 130.25, 2), ("weknora-operator".to_string(), 0.25, 1)]
        );
    }

    #[test]
    fn a_report_that_is_not_xml_is_an_error() {
        assert!(Report::parse("<testsuites><testcase name=\"a\"></testsuite>").is_err());
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
