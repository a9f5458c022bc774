//! `cipc lease`: say which paths of a code base this session is working
//! on, see who holds what, and check paths before touching them
//! (`shared/API.md`, "Leases").
//!
//! Paths are named as every session names them: relative to the git
//! checkout's top level, in the repo derived from its `origin` remote
//! ([`super::repo`]). With `--repo`, no checkout is looked at and the paths
//! are taken as repo-relative, as typed. Acquiring and renewing act as this
//! shell's peer (`CIPC_PEER` / `CIPC_PEER_KEY`); a person without one can
//! list, check and release. [`render`] holds the sentences, shared with
//! `cipc guard check` and the Claude Code hooks.

pub mod render;

use super::output::short_id;
use super::repo::{normalize_pattern, Checkout, RepoError};
use super::{exit, CliError, ClientArgs, Ctx, Exit, IdKind};
use crate::api::{
    ErrorBody, Lease, LeaseRefusal, LeaseRequest, LeasesResponse, RenewLeaseRequest,
    MAX_LEASE_TTL_MS, MIN_LEASE_TTL_MS,
};
use crate::client::ClientError;
use crate::time::Timestamp;
use clap::{Args, Subcommand};
use std::time::Duration;
use uuid::Uuid;

const AFTER_HELP: &str = "\
Paths are relative to the git checkout's top level (a session in a
subdirectory, or on another machine, names the same path); the repo is the
normalised `origin` remote URL, else the top-level directory's name. A path
is a file (src/main.rs), a directory (src/api/, everything below it) or a
glob (quote it: 'src/**/*.sql'). With --repo, paths are taken as
repo-relative, as typed, and no checkout is needed.

Exit codes: 0 ok (check: every path is free), 1 the broker said no (acquire:
another session holds a path; check: another session holds one), 2 usage,
3 cannot reach the broker.";

/// Flags of `cipc lease`.
#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP)]
pub struct LeaseArgs {
    /// Broker, identity and output flags (--peer names the holder).
    #[command(flatten)]
    pub client: ClientArgs,
    /// What to do.
    #[command(subcommand)]
    pub cmd: LeaseCmd,
}

/// The `cipc lease` subcommands.
#[derive(Debug, Subcommand)]
pub enum LeaseCmd {
    /// Hold paths for this peer; refused (nothing taken, exit 1) when
    /// another session holds any of them, naming each holder.
    Acquire {
        /// Files, directories (ending in /) or globs, relative to here.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
        /// How long to hold them unless renewed (1s to 24h) [default: 30m].
        #[arg(long, value_parser = parse_lease_ttl, value_name = "DURATION")]
        ttl: Option<Duration>,
        /// Why, shown to whoever is refused (e.g. "migrating the users table").
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// A shared lease: others may share the paths, but nobody may hold them exclusively.
        #[arg(long)]
        shared: bool,
        /// The repository's name (default: derived from this checkout); the
        /// paths are then repo-relative as typed.
        #[arg(long, value_name = "REPO")]
        repo: Option<String>,
    },
    /// Release leases: by id, by path, or (no arguments) all of this peer's in this repo.
    Release {
        /// Lease ids (whole, or the short id `cipc lease list` shows), or
        /// paths: each of this peer's leases holding one of them (a person
        /// without a peer: anyone's).
        #[arg(value_name = "ID|PATH")]
        targets: Vec<String>,
        /// The repository's name (default: derived from this checkout).
        #[arg(long, value_name = "REPO")]
        repo: Option<String>,
    },
    /// Hold one of this peer's leases longer.
    Renew {
        /// The lease's id: whole, or the short id `cipc lease list` shows.
        id: String,
        /// From now, how long to hold it (1s to 24h) [default: its own ttl again].
        #[arg(long, value_parser = parse_lease_ttl, value_name = "DURATION")]
        ttl: Option<Duration>,
    },
    /// List the held leases of this repo (or of every repo).
    List {
        /// Every repo's leases, not only this checkout's.
        #[arg(long, conflicts_with = "repo")]
        all: bool,
        /// Only this peer's leases.
        #[arg(long)]
        mine: bool,
        /// The repository's name (default: derived from this checkout).
        #[arg(long, value_name = "REPO")]
        repo: Option<String>,
    },
    /// Whether another session holds any of these paths: exit 1 naming
    /// each (path, holder, reason, expiry), exit 0 when all are free.
    Check {
        /// Files, directories (ending in /) or globs, relative to here.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<String>,
        /// The repository's name (default: derived from this checkout); the
        /// paths are then repo-relative as typed.
        #[arg(long, value_name = "REPO")]
        repo: Option<String>,
    },
}

impl LeaseCmd {
    /// The subcommand's name, as typed.
    pub fn name(&self) -> &'static str {
        match self {
            LeaseCmd::Acquire { .. } => "acquire",
            LeaseCmd::Release { .. } => "release",
            LeaseCmd::Renew { .. } => "renew",
            LeaseCmd::List { .. } => "list",
            LeaseCmd::Check { .. } => "check",
        }
    }
}

/// Why a lease `--ttl` was refused (clap shows the sentence).
#[derive(Debug, thiserror::Error)]
pub enum LeaseTtlError {
    /// Not a duration at all.
    #[error("{0}; write a duration like 30s, 10m or 2h")]
    NotADuration(humantime::DurationError),
    /// Shorter than a second.
    #[error("a lease lasts at least 1s")]
    TooShort,
    /// Longer than a day.
    #[error("a lease lasts at most 24h (renew it with `cipc lease renew` to keep it longer)")]
    TooLong,
}

/// Parses a lease's `--ttl` (`10m`, `2h`): from 1 second to 24 hours, the
/// broker's bounds.
pub fn parse_lease_ttl(text: &str) -> Result<Duration, LeaseTtlError> {
    let d = humantime::parse_duration(text.trim()).map_err(LeaseTtlError::NotADuration)?;
    if d < Duration::from_millis(MIN_LEASE_TTL_MS) {
        return Err(LeaseTtlError::TooShort);
    }
    if d > Duration::from_millis(MAX_LEASE_TTL_MS) {
        return Err(LeaseTtlError::TooLong);
    }
    Ok(d)
}

/// Where paths are named: the repo, and the checkout that makes paths
/// relative (none with `--repo`: the paths are repo-relative as typed).
pub struct Place {
    /// The repo every lease and check names.
    pub repo: String,
    /// The checkout the paths are relative to, when derived from one.
    pub checkout: Option<Checkout>,
}

impl Place {
    /// `--repo` when given (then paths are repo-relative as typed), else
    /// the checkout of the current directory.
    pub fn find(repo: Option<&str>) -> Result<Place, CliError> {
        if let Some(r) = repo {
            let r = r.trim();
            if r.is_empty() {
                return Err(CliError::usage(
                    "--repo is empty; name the repository, e.g. --repo github.com/Org/App",
                ));
            }
            return Ok(Place {
                repo: r.to_string(),
                checkout: None,
            });
        }
        let here = std::env::current_dir()
            .map_err(|e| CliError::error(format!("cannot read the current directory: {e}")))?;
        let checkout = Checkout::discover(&here).map_err(repo_error)?;
        Ok(Place {
            repo: checkout.repo.clone(),
            checkout: Some(checkout),
        })
    }

    /// Each path as the repo names it: relative to the checkout's top
    /// level, or (with `--repo`) repo-relative as typed, tidied. Duplicates
    /// are dropped, the order kept.
    pub fn patterns(&self, paths: &[String]) -> Result<Vec<String>, CliError> {
        let mut out: Vec<String> = Vec::new();
        for p in paths {
            let name = match &self.checkout {
                Some(c) => c.relative(p),
                None => normalize_pattern(p),
            }
            .map_err(repo_error)?;
            if !out.contains(&name) {
                out.push(name);
            }
        }
        Ok(out)
    }
}

/// A repo or path that cannot be used, as a usage error (exit 2).
pub fn repo_error(e: RepoError) -> CliError {
    CliError::usage(e.to_string())
}

/// Runs `cipc lease ...`; returns the exit code.
pub async fn run(args: LeaseArgs, ctx: Ctx) -> Result<Exit, CliError> {
    match args.cmd {
        LeaseCmd::Acquire {
            paths,
            ttl,
            reason,
            shared,
            repo,
        } => acquire(&ctx, &paths, ttl, reason, shared, repo.as_deref()).await,
        LeaseCmd::Release { targets, repo } => release(&ctx, &targets, repo.as_deref()).await,
        LeaseCmd::Renew { id, ttl } => renew(&ctx, &id, ttl).await,
        LeaseCmd::List { all, mine, repo } => list(&ctx, all, mine, repo.as_deref()).await,
        LeaseCmd::Check { paths, repo } => check(&ctx, &paths, repo.as_deref()).await,
    }
}

/// The peer that holds leases: this shell's, or a usage error saying how
/// to become one.
fn holder(ctx: &Ctx, what: &str) -> Result<Uuid, CliError> {
    ctx.client.peer().ok_or_else(|| {
        CliError::usage(format!(
            "{what} needs a peer to hold the lease: set CIPC_PEER and CIPC_PEER_KEY for this shell \
             (eval \"$(cipc peers connect ROLE --export)\") or pass --peer and --peer-key"
        ))
    })
}

async fn acquire(
    ctx: &Ctx,
    paths: &[String],
    ttl: Option<Duration>,
    reason: Option<String>,
    shared: bool,
    repo: Option<&str>,
) -> Result<Exit, CliError> {
    let out = ctx.out;
    holder(ctx, "acquiring")?;
    let place = Place::find(repo)?;
    let patterns = place.patterns(paths)?;
    let reason = reason
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    let req = LeaseRequest {
        paths: patterns,
        repo: Some(place.repo.clone()),
        ttl: ttl.map(super::millis),
        reason,
        exclusive: shared.then_some(false),
    };
    let r = match ctx.client.acquire_lease(&req).await {
        Ok(r) => r,
        Err(e) if !e.lease_conflicts().is_empty() => {
            return refused(ctx, &e, !shared);
        }
        Err(e) => return Err(e.into()),
    };
    if out.json {
        out.json(&r)?;
    } else {
        let l = &r.lease;
        out.line(&format!(
            "leased {} in {} until {} [lease {}]; release with `cipc lease release {}`",
            l.paths.join(", "),
            l.repo,
            render::until(l, Timestamp::now()),
            short_id(l.id),
            short_id(l.id)
        ))?;
    }
    Ok(exit::OK)
}

/// A lease request another session's leases stand in the way of: the
/// refusal document on stdout in JSON mode, and on stderr each holder and
/// what to do. Exit 1.
fn refused(ctx: &Ctx, e: &ClientError, exclusive: bool) -> Result<Exit, CliError> {
    let held = e.lease_conflicts();
    if ctx.out.json {
        if let ClientError::Api { code, message, .. } = e {
            ctx.out.json(&LeaseRefusal {
                error: ErrorBody {
                    code: code.clone(),
                    reason: Some("lease_conflict".into()),
                    message: message.clone(),
                },
                conflicts: held.to_vec(),
            })?;
        }
    }
    let n = held.len();
    let mut lines = vec![format!(
        "nothing was taken: {n} lease{} of another session {} in the way",
        if n == 1 { "" } else { "s" },
        if n == 1 { "is" } else { "are" }
    )];
    lines.extend(render::refusal_lines(held, exclusive, Timestamp::now()));
    Err(CliError::error(lines.join("\n")))
}

async fn renew(ctx: &Ctx, id: &str, ttl: Option<Duration>) -> Result<Exit, CliError> {
    let out = ctx.out;
    holder(ctx, "renewing")?;
    let id = super::resolve_id(ctx, id, IdKind::Lease).await?;
    let req = RenewLeaseRequest {
        ttl: ttl.map(super::millis),
    };
    let r = ctx.client.renew_lease(&id, &req).await?;
    if out.json {
        out.json(&r)?;
    } else {
        let l = &r.lease;
        out.line(&format!(
            "renewed lease {} ({}) until {}",
            short_id(l.id),
            l.paths.join(", "),
            render::until(l, Timestamp::now())
        ))?;
    }
    Ok(exit::OK)
}

async fn list(ctx: &Ctx, all: bool, mine: bool, repo: Option<&str>) -> Result<Exit, CliError> {
    let out = ctx.out;
    let me = if mine {
        Some(holder(ctx, "--mine")?.to_string())
    } else {
        None
    };
    let repo = if all {
        None
    } else {
        Some(
            Place::find(repo)
                .map_err(|e| e.suffixed("; or list every repo's leases with --all"))?
                .repo,
        )
    };
    let r = ctx.client.leases(repo.as_deref(), me.as_deref()).await?;
    if out.json {
        out.json(&r)?;
    } else if r.leases.is_empty() {
        out.line(&match &repo {
            Some(repo) => format!("no leases held in {repo}"),
            None => "no leases held".to_string(),
        })?;
    } else {
        out.table(render::lease_table(
            &out,
            &r.leases,
            repo.is_none(),
            Timestamp::now(),
        ))?;
    }
    Ok(exit::OK)
}

async fn check(ctx: &Ctx, paths: &[String], repo: Option<&str>) -> Result<Exit, CliError> {
    let out = ctx.out;
    let place = Place::find(repo)?;
    let patterns = place.patterns(paths)?;
    let r = ctx.client.check_leases(&place.repo, &patterns).await?;
    let now = Timestamp::now();
    if out.json {
        out.json(&r)?;
    } else if r.conflicts.is_empty() {
        out.line(&format!("free: {}", patterns.join(", ")))?;
    } else {
        out.table(render::check_table(&out, &r.conflicts, now))?;
    }
    if r.conflicts.is_empty() {
        return Ok(exit::OK);
    }
    let advice: Vec<String> = render::check_lines(&r.conflicts, now)
        .into_iter()
        .filter(|l| l.trim_start().starts_with('→'))
        .collect();
    if !out.json {
        eprintln!("{}", advice.join("\n"));
    }
    Ok(exit::ERROR)
}

/// What `cipc lease release` was asked to release.
#[derive(Debug, Default, PartialEq)]
struct Targets {
    /// Lease ids (whole, or parts to look up).
    ids: Vec<String>,
    /// Paths, as typed.
    paths: Vec<String>,
}

/// Sorts release arguments into ids and paths: a whole UUID, or hex of at
/// least [`super::MIN_ID_PART`] characters that starts or ends one of
/// `known` ids, is an id; anything else is a path.
fn sort_targets(given: &[String], known: &[Uuid]) -> Targets {
    let mut t = Targets::default();
    for g in given {
        let is_id = Uuid::parse_str(g.trim()).is_ok()
            || IdKind::Lease.fragment(g).is_ok_and(|part| {
                known.iter().any(|id| {
                    let hex = id.simple().to_string();
                    hex.starts_with(&part) || hex.ends_with(&part)
                })
            });
        if is_id {
            t.ids.push(g.clone());
        } else {
            t.paths.push(g.clone());
        }
    }
    t
}

/// Pattern equality as people mean it: `src/api` names `src/api/` too.
fn same_pattern(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

async fn release(ctx: &Ctx, given: &[String], repo: Option<&str>) -> Result<Exit, CliError> {
    let out = ctx.out;
    let me = ctx.client.peer();
    let mut chosen: Vec<String> = Vec::new();
    if given.is_empty() {
        let me = ctx.client.peer().ok_or_else(|| {
            CliError::usage(
                "release what? give lease ids or paths (`cipc lease list` shows them); \
                 without arguments it releases this peer's leases, and CIPC_PEER names no peer",
            )
        })?;
        let place = Place::find(repo)?;
        let r = ctx
            .client
            .leases(Some(&place.repo), Some(&me.to_string()))
            .await?;
        chosen.extend(r.leases.iter().map(|l| l.id.to_string()));
        if chosen.is_empty() && !out.json {
            out.line(&format!("no leases of yours in {}", place.repo))?;
            return Ok(exit::OK);
        }
    } else {
        let held = ctx.client.leases(None, None).await?.leases;
        let known: Vec<Uuid> = held.iter().map(|l| l.id).collect();
        let targets = sort_targets(given, &known);
        for id in &targets.ids {
            chosen.push(super::resolve_id(ctx, id, IdKind::Lease).await?);
        }
        if !targets.paths.is_empty() {
            let place = Place::find(repo)?;
            let patterns = place.patterns(&targets.paths)?;
            let mine_here: Vec<&Lease> = held
                .iter()
                .filter(|l| l.repo == place.repo && me.is_none_or(|m| l.holder == m))
                .collect();
            for p in &patterns {
                let holding: Vec<&&Lease> = mine_here
                    .iter()
                    .filter(|l| l.paths.iter().any(|q| same_pattern(q, p)))
                    .collect();
                if holding.is_empty() {
                    let whose = if me.is_some() { "of yours " } else { "" };
                    return Err(CliError::error(format!(
                        "no lease {whose}holds {p} in {}; `cipc lease list` shows what is held (release by id works too)",
                        place.repo
                    )));
                }
                chosen.extend(holding.iter().map(|l| l.id.to_string()));
            }
        }
    }
    let mut released = Vec::new();
    for id in chosen {
        if released.iter().any(|l: &Lease| l.id.to_string() == id) {
            continue;
        }
        let r = ctx.client.release_lease(&id).await?;
        if !out.json {
            let l = &r.lease;
            out.line(&format!(
                "released lease {} of {}: {} ({})",
                short_id(l.id),
                render::holder(l),
                l.paths.join(", "),
                l.repo
            ))?;
        }
        released.push(r.lease);
    }
    if out.json {
        out.json(&LeasesResponse { leases: released })?;
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_ttls_stay_within_the_brokers_bounds() {
        assert_eq!(parse_lease_ttl("10m").ok(), Some(Duration::from_secs(600)));
        assert_eq!(
            parse_lease_ttl(" 24h ").ok(),
            Some(Duration::from_secs(86_400))
        );
        let refusal =
            |t: &str| parse_lease_ttl(t).map_or_else(|e| e.to_string(), |_| String::new());
        assert!(refusal("500ms").contains("at least 1s"));
        assert!(refusal("25h").contains("at most 24h"));
        assert!(refusal("soon").contains("like 30s"));
    }

    #[test]
    fn release_arguments_are_ids_when_they_name_a_lease() {
        let id = Uuid::now_v7();
        let hex = id.simple().to_string();
        let tail = hex[hex.len() - 8..].to_string();
        let given: Vec<String> = vec![
            id.to_string(),
            tail.clone(),
            "src/main.rs".into(),
            "abcdef".into(),
            "deadbeefcafe".into(),
        ];
        let t = sort_targets(&given, &[id]);
        assert_eq!(t.ids, [id.to_string(), tail]);
        assert_eq!(t.paths, ["src/main.rs", "abcdef", "deadbeefcafe"]);
    }

    #[test]
    fn a_directory_pattern_matches_with_or_without_its_slash() {
        assert!(same_pattern("src/api/", "src/api"));
        assert!(same_pattern("src/api", "src/api"));
        assert!(!same_pattern("src/api/", "src/ap"));
    }

    #[test]
    fn a_repo_flag_takes_paths_as_typed() {
        let p = Place::find(Some(" github.com/Org/App ")).unwrap();
        assert_eq!(p.repo, "github.com/Org/App");
        let got = p
            .patterns(&["./src/a.rs".into(), "src/a.rs".into(), "src/api/".into()])
            .unwrap();
        assert_eq!(got, ["src/a.rs", "src/api/"]);
        let e = p.patterns(&["/etc/passwd".into()]).unwrap_err();
        assert_eq!(e.code, exit::USAGE);
        assert!(Place::find(Some("  ")).is_err());
    }
}
