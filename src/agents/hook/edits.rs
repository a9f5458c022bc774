//! `cipc hook pre-tool-use` for the file-editing tools (Claude Code's Edit,
//! Write, MultiEdit and NotebookEdit; Codex's `apply_patch`): an edit of a
//! path another peer holds a lease on is refused before it happens, and
//! the model is told who holds it, why, until when, and what to do
//! instead. With `--claim-on-edit` (a setup flag) the session also leases
//! what it edits, renewed while it keeps editing and released when the
//! session ends.
//!
//! The path is named as every session names it: relative to the top level
//! of the git checkout the file is in, in that checkout's repo (see
//! [`crate::cli::repo`]). A file outside any checkout is not checked.

use super::{Hook, Reply};
use crate::agents::Agent;
use crate::api::{Lease, LeaseRequest, RefusedEdit, RenewLeaseRequest};
use crate::broker::lease_paths::literal_pattern;
use crate::cli::lease::render;
use crate::cli::repo::Checkout;
use crate::cli::CliError;
use crate::client::{Client, ClientError};
use crate::time::Timestamp;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// Claude Code's tools that change files, and the input field naming the file.
pub const EDIT_TOOLS: [(&str, &str); 4] = [
    ("Edit", "file_path"),
    ("Write", "file_path"),
    ("MultiEdit", "file_path"),
    ("NotebookEdit", "notebook_path"),
];

/// Codex's file-editing tool; its input's `command` is the patch.
pub const CODEX_PATCH_TOOL: &str = "apply_patch";

/// The lines of a Codex patch that name a file it adds, changes, deletes
/// or moves a file to.
const PATCH_FILE_LINES: [&str; 4] = [
    "*** Add File: ",
    "*** Update File: ",
    "*** Delete File: ",
    "*** Move to: ",
];

/// How long a lease claimed on edit lasts after the last edit: 30 minutes.
const CLAIM_TTL_MS: u64 = 30 * 60 * 1000;

/// The files an edit tool call of `agent` changes (none when `tool` is no
/// editing tool).
pub(super) fn edited_files(agent: Agent, tool: &str, input: &Value) -> Vec<String> {
    match agent {
        Agent::ClaudeCode => EDIT_TOOLS
            .iter()
            .find(|(t, _)| *t == tool)
            .and_then(|(_, field)| input.get(*field).and_then(Value::as_str))
            .filter(|f| !f.trim().is_empty())
            .map(|f| vec![f.to_string()])
            .unwrap_or_default(),
        Agent::Codex if tool == CODEX_PATCH_TOOL => input
            .get("command")
            .and_then(Value::as_str)
            .map(patched_files)
            .unwrap_or_default(),
        Agent::Codex => Vec::new(),
    }
}

/// Every file a Codex patch names, once each, in order.
fn patched_files(patch: &str) -> Vec<String> {
    let mut files: Vec<String> = Vec::new();
    for line in patch.lines() {
        let named = PATCH_FILE_LINES
            .iter()
            .find_map(|p| line.strip_prefix(p))
            .map(str::trim)
            .filter(|f| !f.is_empty());
        if let Some(f) = named {
            if !files.iter().any(|have| have == f) {
                files.push(f.to_string());
            }
        }
    }
    files
}

/// The repo and repo-relative path of `file` (absolute, or relative to
/// `cwd`), when it lies in a git checkout.
pub(super) fn locate(file: &str, cwd: Option<&Path>) -> Option<(String, String)> {
    let path = match (Path::new(file).is_absolute(), cwd) {
        (true, _) => PathBuf::from(file),
        (false, Some(cwd)) => cwd.join(file),
        (false, None) => return None,
    };
    // A file about to be written may live in a directory not made yet:
    // the checkout is the one of its nearest existing ancestor.
    let dir = path.ancestors().skip(1).find(|d| d.is_dir())?;
    let checkout = Checkout::discover(dir).ok()?;
    let rel = checkout.relative(&path.to_string_lossy()).ok()?;
    Some((checkout.repo, rel))
}

impl Hook {
    /// Refuses an edit of paths another peer holds; with claiming on, takes
    /// (or renews) this session's lease on each.
    pub(super) async fn edit_check(&self, tool: &str, files: &[String]) -> Result<Reply, CliError> {
        // One check per repo, naming every file of the edit in it.
        let mut by_repo: Vec<(String, Vec<String>)> = Vec::new();
        for (repo, path) in files.iter().filter_map(|f| locate(f, self.cwd.as_deref())) {
            match by_repo.iter_mut().find(|(r, _)| *r == repo) {
                Some((_, paths)) => paths.push(path),
                None => by_repo.push((repo, vec![path])),
            }
        }
        if by_repo.is_empty() {
            return Ok(Reply::default());
        }
        let claim = self.args.claim_on_edit;
        let tool = tool.to_string();
        self.with_peer(false, |client, peer, _key, mut st| async move {
            st.took_turn = true;
            let mut refused: Vec<(String, Vec<Lease>)> = Vec::new();
            for (repo, paths) in &by_repo {
                let conflicts = client.check_files(repo, paths).await?.conflicts;
                // Claims and reports name each file by its pattern.
                let patterns: Vec<String> = paths.iter().map(|p| literal_pattern(p)).collect();
                // (path, its pattern, the leases in the way)
                let mut in_repo: Vec<(&String, &String, Vec<Lease>)> = Vec::new();
                for (path, pattern) in paths.iter().zip(&patterns) {
                    let mut held: Vec<Lease> = conflicts
                        .iter()
                        .filter(|c| c.path == *path)
                        .map(|c| c.lease.clone())
                        .collect();
                    if held.is_empty() && claim {
                        held = claim_or_renew(&client, peer, repo, pattern).await?;
                    }
                    if !held.is_empty() {
                        in_repo.push((path, pattern, held));
                    }
                }
                if in_repo.is_empty() {
                    continue;
                }
                let mut leases: Vec<uuid::Uuid> = Vec::new();
                for l in in_repo.iter().flat_map(|(_, _, held)| held) {
                    if !leases.contains(&l.id) {
                        leases.push(l.id);
                    }
                }
                // The person sees it in the dashboard's activity feed.
                let _ = client
                    .report_refused_edit(&RefusedEdit {
                        repo: repo.clone(),
                        paths: in_repo.iter().map(|(_, p, _)| (*p).clone()).collect(),
                        tool: Some(tool.clone()),
                        leases,
                    })
                    .await;
                refused.extend(in_repo.into_iter().map(|(p, _, held)| (p.clone(), held)));
            }
            if refused.is_empty() {
                return Ok((Reply::default(), st));
            }
            Ok((refusal(&refused), st))
        })
        .await
    }
}

/// Takes a lease on `path` (a [`literal_pattern`]) for this session, or
/// renews the one it has; answers the leases in the way when another
/// session took it meanwhile.
async fn claim_or_renew(
    client: &Client,
    peer: uuid::Uuid,
    repo: &str,
    path: &str,
) -> Result<Vec<Lease>, ClientError> {
    let mine = client
        .leases(Some(repo), Some(&peer.to_string()))
        .await?
        .leases;
    if let Some(l) = mine.iter().find(|l| l.paths.iter().any(|p| p == path)) {
        client
            .renew_lease(
                &l.id.to_string(),
                &RenewLeaseRequest {
                    ttl: Some(CLAIM_TTL_MS),
                },
            )
            .await?;
        return Ok(Vec::new());
    }
    let req = LeaseRequest {
        paths: vec![path.to_string()],
        repo: Some(repo.to_string()),
        ttl: Some(CLAIM_TTL_MS),
        reason: Some("editing it (claimed on edit)".into()),
        exclusive: Some(true),
    };
    match client.acquire_lease(&req).await {
        Ok(_) => Ok(Vec::new()),
        Err(e) if !e.lease_conflicts().is_empty() => Ok(e.lease_conflicts().to_vec()),
        Err(e) => Err(e),
    }
}

/// The refusal of an edit: for each path, the holder, why and until
/// when, and what to do instead (both agents read a `PreToolUse` deny).
fn refusal(refused: &[(String, Vec<Lease>)]) -> Reply {
    let now = Timestamp::now();
    let paths: Vec<&str> = refused.iter().map(|(p, _)| p.as_str()).collect();
    let mut why = format!(
        "cipc: this edit was not made: {} {} leased by another session.",
        paths.join(", "),
        if paths.len() == 1 { "is" } else { "are" }
    );
    for (path, held) in refused {
        for l in held {
            why.push('\n');
            why.push_str(&render::conflict_line(path, l, now));
            why.push_str(&format!(
                "\nAsk them to release it with the cipc MCP tool send_command (target \"{}\", e.g. action \"release-lease\" \
                 with params {{\"lease\": \"{}\", \"why\": \"...\"}}), or pick other work and come back after {}.",
                l.holder,
                l.id,
                render::clock(l.expires_at)
            ));
        }
    }
    let mut out = Map::new();
    out.insert("permissionDecision".into(), json!("deny"));
    out.insert("permissionDecisionReason".into(), json!(why));
    Reply {
        decision: Some(out),
        ..Reply::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::lease_paths::PathPattern;

    #[test]
    fn the_edited_file_is_read_from_each_tools_own_field() {
        let claude = |tool: &str, input: &Value| edited_files(Agent::ClaudeCode, tool, input);
        let edit = json!({"file_path": "/r/src/a.rs", "old_string": "a", "new_string": "b"});
        assert_eq!(claude("Edit", &edit), ["/r/src/a.rs"]);
        assert_eq!(claude("Write", &edit), ["/r/src/a.rs"]);
        let nb = json!({"notebook_path": "/r/n.ipynb", "new_source": "x"});
        assert_eq!(claude("NotebookEdit", &nb), ["/r/n.ipynb"]);
        assert!(claude("Bash", &json!({"command": "ls"})).is_empty());
        assert!(claude("Edit", &json!({"file_path": " "})).is_empty());
        // Codex's apply_patch is not a Claude Code tool.
        assert!(claude("apply_patch", &json!({"command": "*** Add File: a"})).is_empty());
    }

    #[test]
    fn a_codex_patch_names_every_file_it_adds_changes_deletes_or_moves_to() {
        let patch = "*** Begin Patch\n*** Add File: a.txt\n+hello\n*** Update File: src/b.rs\n@@\n-old\n+new\n\
                     *** Update File: c.rs\n*** Move to: d.rs\n*** Delete File: /abs/e.rs\n*** Update File: a.txt\n*** End Patch\n";
        let files = edited_files(Agent::Codex, "apply_patch", &json!({ "command": patch }));
        assert_eq!(files, ["a.txt", "src/b.rs", "c.rs", "d.rs", "/abs/e.rs"]);
        assert!(edited_files(Agent::Codex, "Bash", &json!({"command": patch})).is_empty());
        assert!(edited_files(Agent::Codex, "Edit", &json!({"file_path": "/r/a"})).is_empty());
        assert!(edited_files(Agent::Codex, "apply_patch", &json!({})).is_empty());
    }

    #[test]
    fn a_literal_pattern_brackets_each_glob_character_and_names_the_file() {
        assert_eq!(literal_pattern("src/main.rs"), "src/main.rs");
        assert_eq!(
            literal_pattern("app/[id]/page{x}.tsx"),
            "app/[[]id[]]/page[{]x[}].tsx"
        );
        assert_eq!(literal_pattern("a*b?.md"), "a[*]b[?].md");
        // The broker reads each back as the plain path, not as a glob.
        let lease = |p: &str| PathPattern::parse(p).unwrap_or_else(|e| panic!("{p}: {e}"));
        for path in ["d/app/[id]/page{x.tsx", "d/a*b?.md", "d/]{[}"] {
            let sent = lease(&literal_pattern(path));
            assert!(sent.is_literal(), "{path}");
            assert!(sent.could_overlap(&lease("d/")), "{path}");
        }
        let glob_reading = lease("d/axby.md");
        assert!(!lease(&literal_pattern("d/a*b?.md")).could_overlap(&glob_reading));
        assert!(lease("d/a*b?.md").could_overlap(&glob_reading));
    }

    #[test]
    fn a_file_outside_any_checkout_is_not_located() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let f = dir.path().join("loose.txt");
        assert_eq!(locate(&f.to_string_lossy(), None), None);
        assert_eq!(locate("relative.txt", None), None);
    }
}
