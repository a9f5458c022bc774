//! `cipc hook pre-tool-use` for the file-editing tools (Edit, Write,
//! MultiEdit, NotebookEdit): an edit of a path another peer holds a lease
//! on is refused before it happens, and the model is told who holds it,
//! why, until when, and what to do instead. With `--claim-on-edit` (a
//! setup flag) the session also leases what it edits, renewed while it
//! keeps editing and released when the session ends.
//!
//! The path is named as every session names it: relative to the top level
//! of the git checkout the file is in, in that checkout's repo (see
//! [`crate::cli::repo`]). A file outside any checkout is not checked.

use super::{Hook, Reply};
use crate::api::{Lease, LeaseRequest, RefusedEdit, RenewLeaseRequest};
use crate::cli::lease::render;
use crate::cli::repo::Checkout;
use crate::cli::CliError;
use crate::client::{Client, ClientError};
use crate::time::Timestamp;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// The tools that change files, and the input field naming the file.
pub const EDIT_TOOLS: [(&str, &str); 4] = [
    ("Edit", "file_path"),
    ("Write", "file_path"),
    ("MultiEdit", "file_path"),
    ("NotebookEdit", "notebook_path"),
];

/// How long a lease claimed on edit lasts after the last edit: 30 minutes.
const CLAIM_TTL_MS: u64 = 30 * 60 * 1000;

/// The file an edit tool call changes, when `tool` is one.
pub(super) fn edited_file(tool: &str, input: &Value) -> Option<String> {
    let field = EDIT_TOOLS.iter().find(|(t, _)| *t == tool)?.1;
    input
        .get(field)
        .and_then(Value::as_str)
        .filter(|f| !f.trim().is_empty())
        .map(str::to_string)
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
    /// Refuses an edit of a path another peer holds; with claiming on, takes
    /// (or renews) this session's lease on it.
    pub(super) async fn edit_check(&self, tool: &str, file: &str) -> Result<Reply, CliError> {
        let Some((repo, path)) = locate(file, self.cwd.as_deref()) else {
            return Ok(Reply::default());
        };
        let claim = self.args.claim_on_edit;
        let tool = tool.to_string();
        self.with_peer(false, |client, peer, _key, mut st| async move {
            st.took_turn = true;
            let conflicts = client
                .check_leases(&repo, std::slice::from_ref(&path))
                .await?
                .conflicts;
            let mut held: Vec<Lease> = conflicts.into_iter().map(|c| c.lease).collect();
            if held.is_empty() && claim {
                held = claim_or_renew(&client, peer, &repo, &path).await?;
            }
            if held.is_empty() {
                return Ok((Reply::default(), st));
            }
            // The person sees it in the dashboard's activity feed.
            let _ = client
                .report_refused_edit(&RefusedEdit {
                    repo: repo.clone(),
                    paths: vec![path.clone()],
                    tool: Some(tool.clone()),
                    leases: held.iter().map(|l| l.id).collect(),
                })
                .await;
            Ok((refusal(&path, &held), st))
        })
        .await
    }
}

/// Takes a lease on `path` for this session, or renews the one it has;
/// answers the leases in the way when another session took it meanwhile.
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

/// Claude Code's refusal: the holder, why and until when, and what to do.
fn refusal(path: &str, held: &[Lease]) -> Reply {
    let now = Timestamp::now();
    let mut why = format!("cipc: this edit was not made: {path} is leased by another session.");
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

    #[test]
    fn the_edited_file_is_read_from_each_tools_own_field() {
        let edit = json!({"file_path": "/r/src/a.rs", "old_string": "a", "new_string": "b"});
        assert_eq!(edited_file("Edit", &edit).as_deref(), Some("/r/src/a.rs"));
        assert_eq!(edited_file("Write", &edit).as_deref(), Some("/r/src/a.rs"));
        let nb = json!({"notebook_path": "/r/n.ipynb", "new_source": "x"});
        assert_eq!(
            edited_file("NotebookEdit", &nb).as_deref(),
            Some("/r/n.ipynb")
        );
        assert_eq!(edited_file("Bash", &json!({"command": "ls"})), None);
        assert_eq!(edited_file("Edit", &json!({"file_path": " "})), None);
    }

    #[test]
    fn a_file_outside_any_checkout_is_not_located() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let f = dir.path().join("loose.txt");
        assert_eq!(locate(&f.to_string_lossy(), None), None);
        assert_eq!(locate("relative.txt", None), None);
    }
}
