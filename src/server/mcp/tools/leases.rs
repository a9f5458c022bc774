//! Tools about leases on paths: claim_paths, release_paths, check_paths.
//! Each answer says who holds what and until when; a claim that collides
//! is refused with the leases in the way (`conflicts`, as on REST).

use super::super::args::*;
use super::super::render::{self, Answer};
use super::{parse_id, CipcMcp};
use crate::api::LeaseRequest;
use crate::error_code::ErrorCode;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::{tool, tool_router};

/// `repo` as given, or the refusal that says how to name it.
fn repo_of(repo: Option<String>, tool: &str) -> Result<String, render::Refusal> {
    repo.map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .ok_or_else(|| render::no_repo(tool))
}

#[tool_router(router = lease_tools, vis = "pub(super)")]
impl CipcMcp {
    #[tool(
        description = "Claim paths of a repository before you edit them, so other sessions working on the same code base (here or on other machines) are refused edits of them and see who holds them, until when and why. All or nothing: if another session holds any of them, nothing is claimed and the answer names the holder (ask it with send_command, or pick other work). paths are relative to the repository's top level: files, directories ending in /, or globs. Release them with release_paths when done.",
        annotations(read_only_hint = false, destructive_hint = false)
    )]
    async fn claim_paths(&self, Parameters(args): Parameters<ClaimPathsArgs>) -> Answer {
        let repo = repo_of(args.repo, "claim_paths")?;
        let (_, caller) = self.me("claim_paths", args.peer_key.as_deref())?;
        let req = LeaseRequest {
            paths: args.paths,
            repo: Some(repo),
            ttl: args.ttl_seconds.map(|s| s.saturating_mul(1000)),
            reason: args.reason,
            exclusive: args.shared.map(|s| !s),
        };
        let lease = self.session.broker().acquire_lease(req, &caller).await?;
        Ok(render::lease_granted(&lease))
    }

    #[tool(
        description = "Release paths you claimed with claim_paths, so other sessions may edit them: give lease_id (as claim_paths answered it), or paths as you claimed them (every lease of yours naming one of them is released; repo narrows it to one repository).",
        annotations(read_only_hint = false, destructive_hint = false)
    )]
    async fn release_paths(&self, Parameters(args): Parameters<ReleasePathsArgs>) -> Answer {
        let (_, caller) = self.me("release_paths", args.peer_key.as_deref())?;
        let broker = self.session.broker();
        let paths = args.paths.unwrap_or_default();
        let released = match args
            .lease_id
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            Some(raw) => {
                let id = parse_id(ErrorCode::UnknownLease, "lease", raw)?;
                vec![broker.release_lease(id, &caller).await?]
            }
            None if paths.is_empty() => return Err(render::release_what()),
            None => {
                let repo = args
                    .repo
                    .map(|r| r.trim().to_string())
                    .filter(|r| !r.is_empty());
                broker
                    .release_leases_of(repo.as_deref(), &paths, &caller)
                    .await?
            }
        };
        Ok(render::leases_released(&released))
    }

    #[tool(
        description = "Check whether other sessions hold paths of a repository before you edit them: answers, for each path, who holds it (role, name, peer id), until when and why; your own claims do not count, nor shared claims of paths you share. Nobody listed means you may edit them.",
        annotations(read_only_hint = true)
    )]
    async fn check_paths(&self, Parameters(args): Parameters<CheckPathsArgs>) -> Answer {
        let repo = repo_of(args.repo, "check_paths")?;
        let caller = self.caller(args.peer_key.as_deref())?;
        let conflicts = self
            .session
            .broker()
            .check_leases(Some(&repo), &args.paths, &caller)
            .await?;
        Ok(render::paths_checked(&repo, &args.paths, conflicts))
    }
}
