//! Third-party MCP checks against a real broker's Streamable HTTP endpoint
//! (`/mcp`):
//! - **the official MCP conformance suite** (`@modelcontextprotocol/conformance`),
//!   every server scenario it has (`--suite all`: lifecycle, stateless and
//!   session transports, SSE streams, HTTP header validation, DNS rebinding,
//!   tools, ...), judged against `tests/conformance/expected-failures.yml`:
//!   the checks that need the reference server's fixture tools, prompts and
//!   resources, or features cipc does not offer. Any other failing check, or
//!   a listed check that now passes, fails the test.
//! - **portable tool schemas**: the MCP Inspector's CLI lists the tools with
//!   `--strict`, which reports tool-schema portability problems (a `type`
//!   that is an array, a schema with no validation keyword, a remote `$ref`,
//!   ...); the test wants none, not even warnings.
//!
//! Both are Node 22 programs, pinned by `tests/conformance/package.json` (and
//! its lock file) and installed by `.ci/install-conformance` into
//! `$CIPC_CONFORMANCE_PREFIX`, else `~/.cache/cipc-ci/conformance`. Without
//! them (or with other versions than the pins) these tests print a note and
//! pass, except under `CI=true`, where they fail. docs/conformance.md says how
//! to run the tools by hand.

mod common;

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

/// A safety net so a hung tool fails the test instead of blocking it; never
/// a timing claim (the whole suite takes about a second).
const LIMIT: Duration = Duration::from_secs(120);

/// Where `.ci/install-conformance` installs the tools, under `$HOME`.
const DEFAULT_PREFIX: &str = ".cache/cipc-ci/conformance";

/// Scenarios that must be part of every run, with at least one passing
/// check: the ones this test exists for. A newer suite that renamed or
/// dropped one of them must not pass unnoticed.
const REQUIRED_SCENARIOS: [&str; 9] = [
    "server-initialize",
    "server-session-lifecycle",
    "server-stateless",
    "server-sse-multiple-streams",
    "server-sse-polling",
    "http-header-validation",
    "dns-rebinding-protection",
    "ping",
    "tools-list",
];

/// The data files of these tests.
fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance")
}

// ---- finding the tools ----

/// The installed, pinned tools.
struct Tools {
    /// `node_modules` of the install prefix.
    modules: PathBuf,
    /// Node 22.
    node: PathBuf,
    /// The conformance suite's CLI script.
    conformance: PathBuf,
    /// The MCP Inspector's launcher script (`inspector --cli ...`).
    inspector: PathBuf,
}

impl Tools {
    /// The tools in the install prefix, or why they cannot be used.
    fn find() -> Result<Tools, String> {
        let prefix = match std::env::var_os("CIPC_CONFORMANCE_PREFIX") {
            Some(prefix) => PathBuf::from(prefix),
            None => {
                Path::new(&std::env::var_os("HOME").ok_or("HOME is not set")?).join(DEFAULT_PREFIX)
            }
        };
        let modules = prefix.join("node_modules");
        let tools = Tools {
            node: modules.join("node/bin/node"),
            conformance: modules.join("@modelcontextprotocol/conformance/dist/index.js"),
            inspector: modules
                .join("@modelcontextprotocol/inspector/clients/launcher/build/index.js"),
            modules,
        };
        for file in [&tools.node, &tools.conformance, &tools.inspector] {
            if !file.is_file() {
                return Err(format!("{} is missing", file.display()));
            }
        }
        // Results are only comparable with the expected failures for the
        // pinned versions: an old install after a pin bump counts as missing.
        let pins = read_json(&data_dir().join("package.json"));
        let pins = pins["dependencies"]
            .as_object()
            .expect("tests/conformance/package.json has dependencies");
        for (package, pinned) in pins {
            let manifest = tools.modules.join(package).join("package.json");
            let installed = std::fs::read_to_string(&manifest)
                .ok()
                .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                .map(|manifest| manifest["version"].clone());
            if installed.as_ref() != Some(pinned) {
                return Err(format!(
                    "{package} {} is installed in {}, but {pinned} is pinned",
                    installed.unwrap_or(Value::Null),
                    tools.modules.display()
                ));
            }
        }
        Ok(tools)
    }

    /// `node SCRIPT`, with this install's `node` first on `PATH` and `HOME`
    /// in `home`, so nothing the tools write lands in the real home.
    fn command(&self, script: &Path, home: &Path) -> tokio::process::Command {
        let old = std::env::var_os("PATH").unwrap_or_default();
        let path = std::env::join_paths(
            std::iter::once(self.modules.join(".bin")).chain(std::env::split_paths(&old)),
        )
        .expect("PATH entries without separators");
        let mut cmd = tokio::process::Command::new(&self.node);
        cmd.arg(script)
            .env("PATH", path)
            .env("HOME", home)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        cmd
    }
}

/// The tools, or `None` after printing why this test is skipped. Under
/// `CI=true` missing tools fail the test instead.
fn tools_or_skip(test: &str) -> Option<Tools> {
    match Tools::find() {
        Ok(tools) => Some(tools),
        Err(why) => {
            let why = format!(
                "the MCP conformance tools are not installed ({why}): run .ci/install-conformance"
            );
            common::skip(test, &why);
            None
        }
    }
}

/// A JSON file, parsed.
fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// Runs `cmd` to its end (or fails the test past [`LIMIT`]).
async fn run(mut cmd: tokio::process::Command, what: &str) -> Output {
    tokio::time::timeout(LIMIT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{what} still running after {LIMIT:?}"))
        .unwrap_or_else(|e| panic!("start {what}: {e}"))
}

/// `text` without ANSI colour sequences (the suite always prints them).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters... final byte in @..~
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

// ---- the conformance suite ----

/// The suite's output from its summary on (the per-scenario progress lines
/// before it say nothing the summary does not), without colours.
fn summary(stdout: &str) -> String {
    let plain = strip_ansi(stdout);
    match plain.find("=== SUMMARY ===") {
        Some(at) => plain[at..].to_string(),
        None => plain,
    }
}

/// What one run of `conformance server --suite all` printed.
#[derive(Debug, Default)]
struct SuiteReport {
    /// From "Running all suite (N scenarios) against ...".
    scenarios: usize,
    /// Per scenario: (passed, failed) checks, from the summary lines.
    results: BTreeMap<String, (usize, usize)>,
    /// From "Total: P passed, F failed".
    passed: usize,
    /// Entries under "Unexpected failures (not in baseline):".
    unexpected: Vec<String>,
    /// Entries under "Stale baseline entries ...".
    stale: Vec<String>,
}

/// `"12 passed, 3 failed..."` as (12, 3).
fn passed_failed(text: &str) -> Option<(usize, usize)> {
    let (passed, rest) = text.split_once(" passed, ")?;
    let failed = rest.split(" failed").next()?;
    Some((passed.trim().parse().ok()?, failed.trim().parse().ok()?))
}

impl SuiteReport {
    fn parse(stdout: &str) -> SuiteReport {
        let mut report = SuiteReport::default();
        let mut section = "";
        for line in strip_ansi(stdout).lines() {
            if let Some(rest) = line.strip_prefix("Running all suite (") {
                let n = rest.split(' ').next().unwrap_or_default();
                report.scenarios = n.parse().unwrap_or(0);
            } else if let Some(rest) = line.strip_prefix("Total: ") {
                report.passed = passed_failed(rest).map_or(0, |(p, _)| p);
            } else if let Some(rest) = line.strip_prefix("✓ ").or(line.strip_prefix("✗ ")) {
                if let Some((name, counts)) = rest.split_once(": ") {
                    if let Some(counts) = passed_failed(counts) {
                        report.results.insert(name.to_string(), counts);
                    }
                }
            } else if line.starts_with("Unexpected failures") {
                section = "unexpected";
            } else if line.starts_with("Stale baseline entries") {
                section = "stale";
            } else if line.starts_with("Expected failures") || line.trim().is_empty() {
                section = "";
            } else if let Some(entry) = line.trim().strip_prefix("✗ ") {
                if section == "unexpected" {
                    report.unexpected.push(entry.to_string());
                }
            } else if let Some(entry) = line.trim().strip_prefix("✓ ") {
                if section == "stale" {
                    report.stale.push(entry.to_string());
                }
            }
        }
        report
    }
}

/// The failing checks behind `entries` (`scenario` or `scenario:check-id`),
/// with their messages and details, from the suite's `checks.json` files
/// in `results` (one `server-<scenario>-<timestamp>` directory each).
fn explain(results: &Path, entries: &[String]) -> String {
    let mut out = String::new();
    let Ok(dirs) = std::fs::read_dir(results) else {
        return out;
    };
    for dir in dirs.flatten() {
        let name = dir.file_name().to_string_lossy().into_owned();
        // server-<scenario>-YYYY-MM-DDTHH-MM-SS-mmmZ: the timestamp is the
        // last six '-' pieces.
        let Some(rest) = name.strip_prefix("server-") else {
            continue;
        };
        let pieces: Vec<&str> = rest.split('-').collect();
        if pieces.len() <= 6 {
            continue;
        }
        let scenario = pieces[..pieces.len() - 6].join("-");
        let checks = read_json(&dir.path().join("checks.json"));
        for check in checks.as_array().into_iter().flatten() {
            let status = check["status"].as_str().unwrap_or_default();
            let id = check["id"].as_str().unwrap_or_default();
            let wanted = entries
                .iter()
                .any(|e| *e == scenario || *e == format!("{scenario}:{id}"));
            if wanted && (status == "FAILURE" || status == "WARNING") {
                let mut details = check["details"].to_string();
                if details.len() > 1500 {
                    let mut end = 1500;
                    while !details.is_char_boundary(end) {
                        end -= 1;
                    }
                    details.truncate(end);
                    details.push_str("...");
                }
                let _ = write!(
                    out,
                    "  {scenario}:{id} [{status}] {}\n    {}\n    details: {details}\n",
                    check["errorMessage"].as_str().unwrap_or_default(),
                    check["description"].as_str().unwrap_or_default(),
                );
            }
        }
    }
    out
}

#[tokio::test]
async fn official_conformance_suite_passes() {
    let Some(tools) = tools_or_skip("official_conformance_suite_passes") else {
        return;
    };
    let server = common::start().await;
    let url = format!("{}/mcp", server.url());
    let scratch = tempfile::tempdir().expect("temp dir");
    let results = scratch.path().join("results");
    let baseline = data_dir().join("expected-failures.yml");

    let mut cmd = tools.command(&tools.conformance, scratch.path());
    cmd.args([
        "server",
        "--url",
        &url,
        "--suite",
        "all",
        "--expected-failures",
    ])
    .arg(&baseline)
    .arg("--output-dir")
    .arg(&results);
    let out = run(cmd, "the conformance suite").await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = SuiteReport::parse(&stdout);

    assert!(
        out.status.success(),
        "the MCP conformance suite failed ({}).\n\
         Unexpected failures (fix cipc, or list them in {} with a reason):\n{}\
         Stale entries (these pass now: remove them from {}): {:?}\n\
         --- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        baseline.display(),
        explain(&results, &report.unexpected),
        baseline.display(),
        report.stale,
        summary(&stdout),
        stderr,
    );
    assert!(
        report.scenarios > 0 && report.passed > 0,
        "the suite ran no scenario or passed no check: {report:?}\n{stdout}"
    );
    assert_eq!(
        report.results.len(),
        report.scenarios,
        "one summary line per scenario run: {report:?}"
    );
    for scenario in REQUIRED_SCENARIOS {
        let (passed, _) = report
            .results
            .get(scenario)
            .copied()
            .unwrap_or_else(|| panic!("scenario {scenario} did not run: {report:?}"));
        assert!(
            passed > 0,
            "scenario {scenario} passed no check: {report:?}"
        );
    }
    eprintln!(
        "conformance: {} scenarios, {} checks passed, every failure expected",
        report.scenarios, report.passed
    );
}

// ---- portable tool schemas ----

#[tokio::test]
async fn tool_schemas_are_portable() {
    let Some(tools) = tools_or_skip("tool_schemas_are_portable") else {
        return;
    };
    let server = common::start().await;
    let url = format!("{}/mcp", server.url());
    let scratch = tempfile::tempdir().expect("temp dir");

    let mut cmd = tools.command(&tools.inspector, scratch.path());
    cmd.args([
        "--cli",
        &url,
        "--method",
        "tools/list",
        "--strict",
        "--format",
        "json",
    ]);
    let out = run(cmd, "the MCP Inspector").await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Exit 6 means error-severity findings; their details are on stdout too.
    let envelope: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "the inspector printed no JSON ({e}; {}):\n{stdout}\n--- stderr ---\n{stderr}",
            out.status
        )
    });
    let listed = envelope["result"]["tools"].as_array().map_or(0, Vec::len);
    assert!(
        listed > 0,
        "the inspector listed no tools ({}):\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );

    // [{toolName, findings: [{rule, severity, schema, path, issue, suggestion}]}]
    let mut problems = Vec::new();
    for tool in envelope["schemaFindings"].as_array().into_iter().flatten() {
        for finding in tool["findings"].as_array().into_iter().flatten() {
            let text = |key: &str| finding[key].as_str().unwrap_or_default().to_string();
            problems.push(format!(
                "{} {}.{} [{} {}]\n    {}\n    fix: {}",
                tool["toolName"].as_str().unwrap_or_default(),
                text("schema"),
                text("path"),
                text("severity"),
                text("rule"),
                text("issue"),
                text("suggestion"),
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "the MCP Inspector (--strict) found {} tool-schema portability problem(s) in {listed} \
         tools:\n  {}",
        problems.len(),
        problems.join("\n  "),
    );
    assert!(
        out.status.success(),
        "the inspector failed ({}) with no finding:\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
}
