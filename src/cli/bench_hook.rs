//! `cipc bench --edit-hook N`: what Claude Code's edit check adds to one
//! edit. Each `Edit`/`Write` of a session set up with `cipc claude setup`
//! first runs `cipc hook pre-tool-use`: a process start, `git` to name the
//! file's repo, and one request to the broker (two more when the edit is
//! refused: it is reported to the dashboard). This times whole hook runs, as
//! Claude Code waits for them, beside the floor of a bare process start
//! (`cipc --version`), on a broker of its own (`--memory`) in a temporary
//! git checkout.

use super::bench::Row;
use super::bench_scale::start_broker;
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The timed runs of one kind of hook run, sorted.
struct Runs(Vec<Duration>);

impl Runs {
    fn at(&self, q: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let last = self.0.len() - 1;
        // Nearest rank: the q-quantile of n sorted samples.
        let i = ((q * self.0.len() as f64).ceil() as usize)
            .saturating_sub(1)
            .min(last);
        self.0[i]
    }

    /// One row: its median and p99, beside the floor's median (the same
    /// run's bare process start) and the ratio of the medians.
    fn row(&self, name: &str, target: &str, floor: &Runs) -> Row {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let (mine, base) = (ms(self.at(0.5)), ms(floor.at(0.5)));
        Row {
            name: name.to_string(),
            value: format!("median {mine:.1} ms, p99 {:.1} ms", ms(self.at(0.99))),
            floor: format!("{base:.1} ms (cipc --version)"),
            ratio: if base > 0.0 {
                format!("{:.2}x (+{:.1} ms)", mine / base, mine - base)
            } else {
                String::new()
            },
            target: target.to_string(),
            raw: json!({"runs": self.0.len(), "medianMs": mine, "p99Ms": ms(self.at(0.99)), "floorMedianMs": base}),
        }
    }
}

/// Runs `cipc ARGS` with `input` on stdin `n` times; answers the times.
fn time_runs(
    exe: &Path,
    args: &[&str],
    input: &Value,
    n: usize,
    state: &Path,
) -> Result<Runs, String> {
    let body = input.to_string();
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let mut child = Command::new(exe)
            .args(args)
            .env("CIPC_STATE_DIR", state)
            .env_remove("CIPC_PEER")
            .env_remove("CIPC_PEER_KEY")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(body.as_bytes())
                .map_err(|e| format!("cannot write the hook input: {e}"))?;
        }
        child
            .wait()
            .map_err(|e| format!("cannot wait for the hook: {e}"))?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok(Runs(times))
}

/// The benchmark: a free edit, a refused one, and the process-start floor.
pub fn edit_hook(n: usize) -> Result<Vec<Row>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let (mut broker, url) = start_broker(["--memory"])?;
    let result = (|| {
        let dir = tempfile::Builder::new()
            .prefix("cipc-bench-hook")
            .tempdir()
            .map_err(|e| format!("cannot make a temporary directory: {e}"))?;
        let repo = dir.path().join("repo");
        let state = dir.path().join("state");
        std::fs::create_dir_all(&repo)
            .map_err(|e| format!("cannot create {}: {e}", repo.display()))?;
        let git = Command::new("git")
            .args(["init", "-q"])
            .current_dir(&repo)
            .status()
            .map_err(|e| format!("git is needed for this benchmark: {e}"))?;
        if !git.success() {
            return Err("git init failed".to_string());
        }
        let session = "bench-edit-hook";
        let input = |event: &str, extra: Value| {
            let mut v = json!({"session_id": session, "cwd": repo, "hook_event_name": event});
            if let (Some(o), Some(x)) = (v.as_object_mut(), extra.as_object()) {
                o.extend(x.clone());
            }
            v
        };
        let hook = |word: &'static str| -> Vec<&str> {
            vec!["hook", word, "--role", "bench", "--url", &url]
        };
        // The session registers (as SessionStart would), and another peer
        // leases one file of the repo.
        time_runs(
            &exe,
            &hook("session-start"),
            &input("SessionStart", json!({"source": "startup"})),
            1,
            &state,
        )?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the async runtime: {e}"))?;
        rt.block_on(async {
            let client = crate::client::Client::new(&url, None, None).map_err(|e| e.to_string())?;
            let other = client
                .connect(&crate::api::ConnectRequest {
                    role: "holder".into(),
                    protect: Some(true),
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?;
            let holder = crate::client::Client::new(&url, None, Some(other.peer.id))
                .map_err(|e| e.to_string())?
                .with_key(Some(other.key));
            holder
                .acquire_lease(&crate::api::LeaseRequest {
                    paths: vec!["locked.txt".into()],
                    repo: Some("repo".into()),
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(())
        })?;
        let edit = |file: &str| {
            input(
                "PreToolUse",
                json!({"tool_name": "Write", "tool_input": {"file_path": repo.join(file), "content": "x"}}),
            )
        };
        let floor = time_runs(&exe, &["--version"], &json!({}), n, &state)?;
        let free = time_runs(&exe, &hook("pre-tool-use"), &edit("free.txt"), n, &state)?;
        let refused = time_runs(&exe, &hook("pre-tool-use"), &edit("locked.txt"), n, &state)?;
        Ok(vec![
            floor.row("process start floor (cipc --version)", "the floor", &floor),
            free.row(
                "edit check, free file (allowed)",
                "a few ms over the floor",
                &floor,
            ),
            refused.row(
                "edit check, leased file (refused, reported)",
                "a few ms over the floor",
                &floor,
            ),
        ])
    })();
    let _ = broker.kill();
    let _ = broker.wait();
    result
}
