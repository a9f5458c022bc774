//! `cipc guard install | remove | check`: a git pre-commit hook that
//! refuses a commit whose staged paths another session leases.
//!
//! `install` finds the hooks directory as git does (`git rev-parse
//! --git-path hooks`: `core.hooksPath` and worktrees respected) and adds
//! cipc's block to `pre-commit` ([`script`]: merged into a shell hook,
//! chaining any other kind). The hook runs `cipc` by name, from PATH, so
//! the same hook works on every machine and after cipc moves.
//!
//! `check` is what the hook runs: the staged paths (`git diff --cached
//! --name-only -z --no-renames`, so a rename's old and new path and a
//! deletion count) checked with `GET /leases/check` as this shell's peer,
//! whose own leases pass. A path another peer holds refuses the commit
//! (exit 1, naming each path, holder, reason and expiry). Anything else
//! going wrong (no broker, no checkout, a bad setting) warns and lets the
//! commit through (exit 0): a guard that cannot ask must not stop work.

pub mod script;

use super::lease::{render, Place};
use super::{exit, CliError, ClientArgs, Ctx, Exit};
use crate::api::LeaseConflict;
use crate::time::Timestamp;
use clap::{Args, Subcommand};
use script::{Removed, CHAINED};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// How many paths one `GET /leases/check` asks about (a huge commit is
/// asked in parts, so no URL grows without bound).
const PATHS_PER_CHECK: usize = crate::api::MAX_LEASE_PATHS;
/// How long the guard waits for the broker before letting the commit through.
const BROKER_PATIENCE: Duration = Duration::from_secs(10);

const AFTER_HELP: &str = "\
The hook runs `cipc guard check` before each commit. It refuses the commit
(exit 1) when another session holds a staged path, naming each path, its
holder, the reason and the expiry; your own leases (CIPC_PEER / CIPC_PEER_KEY)
pass. When the broker cannot be reached it warns and lets the commit through.
`git commit --no-verify` skips the hook. The hook calls `cipc` from PATH.";

/// Flags of `cipc guard`.
#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP)]
pub struct GuardArgs {
    /// What to do.
    #[command(subcommand)]
    pub cmd: GuardCmd,
}

/// The `cipc guard` subcommands.
#[derive(Debug, Subcommand)]
pub enum GuardCmd {
    /// Add the lease check to the repository's pre-commit hook (merged with one that exists).
    Install {
        /// A directory of the repository [default: the current one].
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Take out exactly what `install` added, restoring the hook as it was.
    Remove {
        /// A directory of the repository [default: the current one].
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Check the staged paths against other sessions' leases (what the hook runs).
    Check(CheckArgs),
}

impl GuardCmd {
    /// The subcommand's name, as typed.
    pub fn name(&self) -> &'static str {
        match self {
            GuardCmd::Install { .. } => "install",
            GuardCmd::Remove { .. } => "remove",
            GuardCmd::Check(_) => "check",
        }
    }
}

/// Flags of `cipc guard check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Broker, identity and output flags (the peer whose own leases pass).
    #[command(flatten)]
    pub client: ClientArgs,
    /// The repository's name [default: derived from this checkout].
    #[arg(long, value_name = "REPO")]
    pub repo: Option<String>,
}

/// Runs `cipc guard ...`; returns the exit code.
pub fn run(args: GuardArgs) -> Exit {
    let result = match args.cmd {
        GuardCmd::Install { dir } => install(dir.as_deref()),
        GuardCmd::Remove { dir } => remove(dir.as_deref()),
        GuardCmd::Check(a) => return check(&a),
    };
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            if let Some(m) = e.message {
                eprintln!("{}: {m}", super::prefix());
            }
            e.code
        }
    }
}

/// The repository's hooks directory, as git resolves it.
fn hooks_dir(dir: Option<&Path>) -> Result<PathBuf, CliError> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => std::env::current_dir()
            .map_err(|e| CliError::error(format!("cannot read the current directory: {e}")))?,
    };
    let out = Command::new("git")
        .arg("-C")
        .arg(&dir)
        .args(["rev-parse", "--git-path", "hooks"])
        .output()
        .map_err(|e| CliError::error(format!("cannot run git ({e}); the guard needs git")))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        return Err(CliError::usage(format!(
            "{} is not in a git repository ({}); pass --dir with one",
            dir.display(),
            said.lines().next().unwrap_or("git said no").trim()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let hooks = PathBuf::from(text.trim_end_matches(['\n', '\r']));
    // Relative to where git ran.
    Ok(if hooks.is_absolute() {
        hooks
    } else {
        dir.join(hooks)
    })
}

/// Whether a file exists and may be executed (git ignores a hook that may not).
fn executable(meta: &std::fs::Metadata) -> bool {
    meta.permissions().mode() & 0o111 != 0
}

/// Writes `text` to `path` through a temporary file beside it, with `mode`.
fn write_hook(path: &Path, text: &str, mode: u32) -> Result<(), CliError> {
    let fail = |e: std::io::Error| CliError::error(format!("cannot write {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let tmp = path.with_extension(format!("cipc-{}.tmp", std::process::id()));
    std::fs::write(&tmp, text).map_err(fail)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(e)
    })
}

/// Reads a hook: its text and mode, `None` when there is none.
fn read_hook(path: &Path) -> Result<Option<(Vec<u8>, std::fs::Metadata)>, CliError> {
    match std::fs::metadata(path) {
        Ok(meta) => {
            let bytes = std::fs::read(path)
                .map_err(|e| CliError::error(format!("cannot read {}: {e}", path.display())))?;
            Ok(Some((bytes, meta)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CliError::error(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// Whether an executable named `cipc` is on PATH (where the hook looks).
fn cipc_on_path() -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .any(|d| std::fs::metadata(d.join("cipc")).is_ok_and(|m| m.is_file() && executable(&m)))
    })
}

fn install(dir: Option<&Path>) -> Result<(), CliError> {
    let hooks = hooks_dir(dir)?;
    let hook = hooks.join("pre-commit");
    let chained = hooks.join(CHAINED);
    let shown = hook.display();
    let script_error = |e: script::ScriptError| CliError::error(format!("{shown}: {e}"));
    let said = match read_hook(&hook)? {
        None => {
            // A hook moved aside earlier whose pre-commit has since gone: chain it again.
            let text = script::with_block(None, chained.exists()).map_err(script_error)?;
            write_hook(&hook, &text, 0o755)?;
            format!("installed the cipc guard in {shown}")
        }
        Some((_, meta)) if !executable(&meta) => {
            return Err(CliError::error(format!(
                "{shown} exists but is not executable, so git does not run it; \
                 make it executable (chmod +x) or delete it, then run this again"
            )));
        }
        Some((bytes, meta)) => match std::str::from_utf8(&bytes)
            .ok()
            .filter(|t| script::is_shell(t))
        {
            Some(text) => {
                let merged = script::with_block(Some(text), false).map_err(script_error)?;
                if merged == text {
                    format!("the cipc guard is already in {shown}; nothing changed")
                } else {
                    let had = script::chains(text) || text.contains(script::END);
                    write_hook(&hook, &merged, meta.permissions().mode() & 0o7777)?;
                    if had {
                        format!("updated the cipc guard in {shown}")
                    } else {
                        format!("added the cipc guard to the existing hook {shown}, which runs on after it")
                    }
                }
            }
            None => {
                if chained.exists() {
                    return Err(CliError::error(format!(
                        "{shown} is not a shell script, and {} already exists, so it cannot be moved aside; \
                         merge the two by hand, then run this again",
                        chained.display()
                    )));
                }
                std::fs::rename(&hook, &chained)
                    .map_err(|e| CliError::error(format!("cannot move {shown} aside: {e}")))?;
                let text = script::with_block(None, true).map_err(script_error)?;
                write_hook(&hook, &text, 0o755)?;
                format!(
                    "moved the existing hook (not a shell script) to {} and installed the cipc guard in {shown}, which runs it after the check",
                    chained.display()
                )
            }
        },
    };
    println!("{said}");
    if !cipc_on_path() {
        eprintln!(
            "{}: warning: `cipc` is not on PATH, and the hook runs it from there; \
             until it is, commits go through unchecked (with a warning)",
            super::prefix()
        );
    }
    Ok(())
}

fn remove(dir: Option<&Path>) -> Result<(), CliError> {
    let hooks = hooks_dir(dir)?;
    let hook = hooks.join("pre-commit");
    let chained = hooks.join(CHAINED);
    let shown = hook.display();
    let restore_chained = || -> Result<String, CliError> {
        std::fs::rename(&chained, &hook).map_err(|e| {
            CliError::error(format!(
                "cannot move {} back to {shown}: {e}",
                chained.display()
            ))
        })?;
        Ok(format!(" and moved {} back", chained.display()))
    };
    let Some((bytes, meta)) = read_hook(&hook)? else {
        if chained.exists() {
            let back = restore_chained()?;
            println!("there was no cipc guard in {shown}{back}");
        } else {
            println!(
                "there is no pre-commit hook in {}; nothing to remove",
                hooks.display()
            );
        }
        return Ok(());
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        println!("{shown} is not cipc's (not a text script); nothing changed");
        return Ok(());
    };
    let removed =
        script::without_block(text).map_err(|e| CliError::error(format!("{shown}: {e}")))?;
    match removed {
        Removed::NoBlock => println!("there is no cipc guard in {shown}; nothing changed"),
        Removed::Nothing => {
            std::fs::remove_file(&hook)
                .map_err(|e| CliError::error(format!("cannot delete {shown}: {e}")))?;
            let back = if chained.exists() {
                restore_chained()?
            } else {
                String::new()
            };
            println!("removed {shown}, which held only the cipc guard{back}");
        }
        Removed::Text(rest) => {
            write_hook(&hook, &rest, meta.permissions().mode() & 0o7777)?;
            println!("took the cipc guard out of {shown}; the rest of the hook is as it was");
            if script::chains(text) && chained.exists() {
                eprintln!(
                    "{}: warning: {} was run by the guard and is left where it is; \
                     move it back to {shown} by hand if you want it to run",
                    super::prefix(),
                    chained.display()
                );
            }
        }
    }
    Ok(())
}

/// Says why the commit was not checked, and lets it through.
fn let_through(why: &str) -> Exit {
    eprintln!(
        "{}: warning: {why}; this commit was NOT checked against leases and goes through",
        super::prefix()
    );
    exit::OK
}

fn check(args: &CheckArgs) -> Exit {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return let_through(&format!("cannot start the async runtime: {e}")),
    };
    match rt.block_on(check_staged(args)) {
        Ok(code) => code,
        Err(e) => let_through(e.message.as_deref().unwrap_or("the check failed")),
    }
}

/// The staged paths of the checkout at `top`, repo-relative: added,
/// changed and deleted ones, and both sides of a rename.
fn staged_paths(top: &Path) -> Result<Vec<String>, CliError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(top)
        .args(["diff", "--cached", "--name-only", "-z", "--no-renames"])
        .output()
        .map_err(|e| CliError::error(format!("cannot run git ({e})")))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        return Err(CliError::error(format!(
            "git diff --cached failed: {}",
            said.lines().next().unwrap_or_default().trim()
        )));
    }
    let mut paths: Vec<String> = out
        .stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    paths.dedup();
    Ok(paths)
}

async fn check_staged(args: &CheckArgs) -> Result<Exit, CliError> {
    let place = Place::find(args.repo.as_deref())?;
    let top = match &place.checkout {
        Some(c) => c.top.clone(),
        None => std::env::current_dir()
            .map_err(|e| CliError::error(format!("cannot read the current directory: {e}")))?,
    };
    let paths = staged_paths(&top)?;
    if paths.is_empty() {
        return Ok(exit::OK);
    }
    let mut ctx = Ctx::new(&args.client).await?;
    ctx.client = ctx.client.impatient(BROKER_PATIENCE)?;
    let mut conflicts: Vec<LeaseConflict> = Vec::new();
    for part in paths.chunks(PATHS_PER_CHECK) {
        let r = ctx.client.check_files(&place.repo, part).await?;
        conflicts.extend(r.conflicts);
    }
    if args.client.json {
        ctx.out.json(&crate::api::LeaseCheckResponse {
            conflicts: conflicts.clone(),
        })?;
    }
    if conflicts.is_empty() {
        return Ok(exit::OK);
    }
    let mut lines = vec![format!(
        "{}: commit refused: another session holds {} staged path{} in {}",
        super::prefix(),
        conflicts.len(),
        if conflicts.len() == 1 { "" } else { "s" },
        place.repo
    )];
    lines.extend(render::check_lines(&conflicts, Timestamp::now()));
    lines.push(
        "Ask the holder, wait until the lease ends, or unstage those paths (git restore --staged PATH); \
         `git commit --no-verify` skips this check."
            .into(),
    );
    eprintln!("{}", lines.join("\n"));
    Ok(exit::ERROR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_dir_follows_git() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path();
        let git = |args: &[&str]| {
            let ok = Command::new("git")
                .arg("-C")
                .arg(top)
                .args(args)
                .output()
                .is_ok_and(|o| o.status.success());
            assert!(ok, "git {args:?}");
        };
        assert!(hooks_dir(Some(top)).is_err(), "not a repository yet");
        git(&["init", "-q"]);
        std::fs::create_dir_all(top.join("sub")).unwrap();
        let h = hooks_dir(Some(&top.join("sub"))).unwrap();
        assert_eq!(
            std::fs::canonicalize(h).unwrap(),
            std::fs::canonicalize(top.join(".git/hooks")).unwrap()
        );
        git(&["config", "core.hooksPath", "githooks"]);
        let h = hooks_dir(Some(&top.join("sub"))).unwrap();
        assert_eq!(
            lexical(&h),
            lexical(&top.join("sub").join("../githooks")),
            "core.hooksPath is relative to the top level"
        );
    }

    /// `a/b/../c` as `a/c`, for comparing paths that may not exist.
    fn lexical(p: &Path) -> PathBuf {
        let mut out = PathBuf::new();
        for c in p.components() {
            match c {
                std::path::Component::ParentDir => {
                    out.pop();
                }
                other => out.push(other),
            }
        }
        out
    }
}
