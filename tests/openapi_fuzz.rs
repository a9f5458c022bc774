//! `/openapi.json` says what the broker does: schemathesis (an OpenAPI
//! fuzzer, pinned, installed by `.ci/install-schemathesis`) runs every check
//! it has (`--checks all`: status codes, response schemas, schema-valid
//! requests accepted, schema-invalid ones refused, headers, stateful links)
//! against a real broker and must find no mismatch.
//!
//! Left out, on purpose:
//! - the check `use_after_free` (ST301): `DELETE /peers/{id}` disconnects a
//!   peer and `DELETE /signals/{name}` clears a latch, as the contract says;
//!   both stay readable afterwards by design;
//! - the long-polls (`.../wait`, `.../result`, the streams, and
//!   `/channels/{name}/messages`, which long-polls when given `timeout`):
//!   a generated `timeout` of minutes is valid, so they would run into the
//!   fuzzer's request timeout; the integration tests cover them; for the
//!   same reason the long-poll parameters of two routes that also do other
//!   things (`wait` on `POST /commands/send`, `next` on the ack) are taken
//!   out of the document the fuzzer reads, and the routes are fuzzed without
//!   them;
//! - `POST /reset`, which would wipe the state the stateful phase builds.
//!
//! One answer is allowed on purpose: `POST /questions/{id}/answer` with an
//! answer that is not one of that question's choices is a 400 (the
//! contract says so), although the document cannot tell which strings a
//! given question accepts; `schemathesis.toml` adds 400 to what the
//! "schema-valid data is accepted" check expects there.
//!
//! schemathesis is found in `CIPC_SCHEMATHESIS`, then where
//! `.ci/install-schemathesis` puts it, then as `st` on `PATH`. Without it the
//! test prints a note and passes, except under `CI=true`, where it fails.

mod common;

use std::path::PathBuf;
use std::process::Command;

fn schemathesis() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CIPC_SCHEMATHESIS") {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME").map(PathBuf::from)?;
    let installed = home.join(".cache/cipc-ci/schemathesis/bin/st");
    if installed.is_file() {
        return Some(installed);
    }
    let on_path = Command::new("st").arg("--version").output().ok()?;
    on_path.status.success().then(|| PathBuf::from("st"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_matches_what_the_broker_does() {
    let Some(st) = schemathesis() else {
        common::skip(
            "the_openapi_document_matches_what_the_broker_does",
            "schemathesis is not installed: run .ci/install-schemathesis",
        );
        return;
    };
    let server = common::start().await;
    let base = server.url();
    let home = tempfile::tempdir().expect("tempdir");
    let mut doc: serde_json::Value = common::http()
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .expect("openapi.json")
        .json()
        .await
        .expect("json");
    for (path, param) in [
        ("/commands/send", "wait"),
        ("/commands/{commandId}/ack", "next"),
    ] {
        let params = doc["paths"][path]["post"]["parameters"]
            .as_array_mut()
            .unwrap_or_else(|| panic!("{path} documents its parameters"));
        let before = params.len();
        params.retain(|p| p["name"] != param);
        assert_eq!(params.len() + 1, before, "{path} documents ?{param}=");
    }
    let spec = home.path().join("openapi.json");
    std::fs::write(&spec, doc.to_string()).expect("write the spec");
    let config = home.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        r#"[[operations]]
include-path = "/questions/{id}/answer"
checks.positive_data_acceptance.expected-statuses = ["2XX", "400", "401", "403", "404", "409", "429", "5XX"]

# A lease's paths must be valid globs and plain repo-relative paths, and a
# request needs a repo; JSON Schema cannot say all of that, so a
# schema-valid request may still be a 400 `invalid_lease`.
[[operations]]
include-path-regex = "^/leases"
checks.positive_data_acceptance.expected-statuses = ["2XX", "400", "401", "403", "404", "409", "429", "5XX"]
"#,
    )
    .expect("write the config");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(st)
            .arg("--config-file")
            .arg(&config)
            .arg("run")
            .arg(&spec)
            .args(["--url", &base, "--checks", "all"])
            .args(["--exclude-checks", "use_after_free"])
            .args([
                "--exclude-path-regex",
                "/(wait|stream|result|messages)$|^/events$|^/reset$",
            ])
            .args(["--request-timeout", "10", "--max-examples", "25"])
            .args(["--seed", "20261127", "--no-color"])
            .env("HOME", home.path())
            .current_dir(home.path())
            .env("SCHEMATHESIS_HOOKS", "")
            .output()
            .expect("run schemathesis")
    })
    .await
    .expect("task");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis found mismatches:\n{text}"
    );
    assert!(
        text.contains("passed"),
        "schemathesis ran no test case:\n{text}"
    );
}
