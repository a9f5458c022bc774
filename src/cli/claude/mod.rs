//! `cipc claude setup | remove`: makes every Claude Code session started in
//! a project (or everywhere) a peer of a role, with the cipc MCP tools and
//! the hooks ([`hook`]) that reach it between tool calls and when idle.
//!
//! Where each scope writes (as Claude Code reads them):
//!
//! | scope | MCP server | hooks |
//! |---|---|---|
//! | `project` (shared, in git) | `.mcp.json` | `.claude/settings.json` |
//! | `local` (this project, only you) | `~/.claude.json`, under the project | `.claude/settings.local.json` |
//! | `user` (every project) | `~/.claude.json` | `~/.claude/settings.json` |
//!
//! The files: [`settings`] (what setup adds and remove takes out, as pure
//! functions on JSON), [`hook`] (what each hook does), [`state`] (what a
//! session's hooks remember) and `process` (what a hook can tell about the
//! Claude Code process running it).
//!
//! Files are merged, never replaced: other servers, hooks and keys stay as
//! they were; running setup twice changes nothing; `remove` takes out what
//! setup added and nothing else.

pub mod hook;
mod process;
pub mod settings;
pub mod state;

use super::{exit, CliError, Exit};
use crate::client::DEFAULT_URL;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;
use settings::{shell_quote, HookCommand, ShapeError};
use std::path::{Path, PathBuf};

/// Flags of `cipc claude`.
#[derive(Debug, Args)]
pub struct ClaudeArgs {
    /// What to do.
    #[command(subcommand)]
    pub cmd: ClaudeCmd,
}

/// The `cipc claude` subcommands.
#[derive(Debug, Subcommand)]
pub enum ClaudeCmd {
    /// Configure Claude Code so its sessions are peers of ROLE from their first moment.
    Setup(SetupArgs),
    /// Take out exactly what `setup` added (the MCP server and the hooks).
    Remove(RemoveArgs),
}

/// Which Claude Code configuration to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scope {
    /// This project, shared with the team: .mcp.json and .claude/settings.json.
    Project,
    /// This project, only for you: ~/.claude.json and .claude/settings.local.json.
    Local,
    /// Every project of yours: ~/.claude.json and ~/.claude/settings.json.
    User,
}

/// Which MCP transport the server entry uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// Streamable HTTP at /mcp (recommended).
    Http,
    /// The older HTTP+SSE transport at /mcp/sse.
    Sse,
}

/// Flags of `cipc claude setup`.
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// The role every session takes, e.g. backend (1-64 of A-Z a-z 0-9 . _ -).
    #[arg(long)]
    pub role: String,
    /// A name for the sessions' peers (default: the project directory and session).
    #[arg(long)]
    pub name: Option<String>,
    /// Which configuration to write.
    #[arg(long, value_enum, default_value_t = Scope::Project)]
    pub scope: Scope,
    /// The MCP transport.
    #[arg(long, value_enum, default_value_t = Transport::Http)]
    pub transport: Transport,
    /// The project directory (default: the current one).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The broker's URL.
    #[arg(long, env = "CIPC_URL", hide_env_values = true, default_value = DEFAULT_URL, value_name = "URL")]
    pub url: String,
    /// The broker has a token (given here or in CIPC_TOKEN): the MCP entry sends it.
    #[arg(long, env = "CIPC_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Read the token from this file; the hooks read it from there too.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// The cipc program the hooks run (default: `cipc`, found on PATH, in a
    /// project's shared settings; this executable's absolute path for the
    /// local and user scopes).
    #[arg(long, value_name = "PATH")]
    pub cipc: Option<String>,
    /// How long a permission prompt relayed to the dashboard waits for the
    /// person (e.g. 10m, 1h); the terminal's own dialog shows beside it all
    /// along and whichever answers first wins. 0 relays nothing.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_wait)]
    pub permission_wait: std::time::Duration,
    /// Also lease each file a session edits (30 minutes, renewed while it
    /// keeps editing, released when it ends), so other sessions are refused
    /// it. Off by default: edits of files another session leased are
    /// refused either way.
    #[arg(long)]
    pub claim_on_edit: bool,
    /// Print what would change and write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Flags of `cipc claude remove`.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// Which configuration to clean.
    #[arg(long, value_enum, default_value_t = Scope::Project)]
    pub scope: Scope,
    /// The project directory (default: the current one).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Print what would change and write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Parses `--permission-wait`: a duration from 0 (off) to 7 days.
fn parse_wait(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("{e}; write a duration like 10m or 1h, or 0 to relay nothing"))?;
    if d > std::time::Duration::from_secs(7 * 24 * 3600) {
        return Err("it must be at most 7 days".into());
    }
    Ok(d)
}

/// Runs `cipc claude ...`.
pub fn run(args: ClaudeArgs) -> Exit {
    let result = match args.cmd {
        ClaudeCmd::Setup(a) => setup(&a),
        ClaudeCmd::Remove(a) => remove(&a),
    };
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            if let Some(m) = e.message {
                eprintln!("cipc claude: {m}");
            }
            e.code
        }
    }
}

/// The two files a scope writes.
struct Targets {
    /// The JSON file holding the MCP server, and the path inside it to the
    /// object that holds `mcpServers` (empty: the file's root).
    mcp_file: PathBuf,
    mcp_at: Vec<String>,
    /// The settings file holding the hooks.
    settings_file: PathBuf,
}

fn targets(scope: Scope, dir: Option<&Path>) -> Result<Targets, CliError> {
    let project = match dir {
        Some(d) => d.to_path_buf(),
        None => std::env::current_dir()
            .map_err(|e| CliError::error(format!("cannot read the current directory: {e}")))?,
    };
    let project = std::fs::canonicalize(&project)
        .map_err(|e| CliError::usage(format!("--dir {}: {e}", project.display())))?;
    let config_dir = || -> Result<PathBuf, CliError> {
        if let Some(d) = std::env::var_os("CLAUDE_CONFIG_DIR").filter(|d| !d.is_empty()) {
            return Ok(PathBuf::from(d));
        }
        std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|h| PathBuf::from(h).join(".claude"))
            .ok_or_else(|| {
                CliError::error(
                    "HOME is not set, so Claude Code's user configuration cannot be found",
                )
            })
    };
    // Claude Code keeps user-wide MCP servers in ~/.claude.json, beside (not
    // in) ~/.claude; with CLAUDE_CONFIG_DIR it is inside that directory.
    let user_config = || -> Result<PathBuf, CliError> {
        if let Some(d) = std::env::var_os("CLAUDE_CONFIG_DIR").filter(|d| !d.is_empty()) {
            return Ok(PathBuf::from(d).join(".claude.json"));
        }
        let dir = config_dir()?;
        Ok(dir.with_file_name(".claude.json"))
    };
    Ok(match scope {
        Scope::Project => Targets {
            mcp_file: project.join(".mcp.json"),
            mcp_at: Vec::new(),
            settings_file: project.join(".claude").join("settings.json"),
        },
        Scope::Local => Targets {
            mcp_file: user_config()?,
            mcp_at: vec!["projects".into(), project.to_string_lossy().into_owned()],
            settings_file: project.join(".claude").join("settings.local.json"),
        },
        Scope::User => Targets {
            mcp_file: user_config()?,
            mcp_at: Vec::new(),
            settings_file: config_dir()?.join("settings.json"),
        },
    })
}

fn setup(a: &SetupArgs) -> Result<(), CliError> {
    crate::api::validate_name("role", &a.role).map_err(|e| CliError::usage(e.to_string()))?;
    crate::client::Client::new(&a.url, None, None)?;
    let t = targets(a.scope, a.dir.as_deref())?;
    let token = match &a.token_file {
        Some(p) => Some(super::token::read_token_file(p)?),
        None => a.token.clone().filter(|t| !t.trim().is_empty()),
    };
    // A shared file never holds the secret: Claude Code expands ${CIPC_TOKEN}.
    let header = token.as_ref().map(|t| match a.scope {
        Scope::Project => "${CIPC_TOKEN}".to_string(),
        Scope::Local | Scope::User => t.clone(),
    });
    let entry = settings::mcp_entry(&a.url, a.transport == Transport::Sse, header.as_deref());

    let program = match (&a.cipc, a.scope) {
        (Some(p), _) => p.clone(),
        // A file the team commits names no path of this machine.
        (None, Scope::Project) => "cipc".to_string(),
        (None, Scope::Local | Scope::User) => std::env::current_exe()
            .map_err(|e| {
                CliError::error(format!(
                    "cannot find this executable ({e}); pass --cipc PATH"
                ))
            })?
            .to_string_lossy()
            .into_owned(),
    };
    let not_on_path = program == "cipc" && find_on_path("cipc").is_none();
    let mut hook_args = vec!["--role".to_string(), shell_quote(&a.role)];
    if let Some(n) = &a.name {
        hook_args.extend(["--name".into(), shell_quote(n)]);
    }
    if a.url != DEFAULT_URL {
        hook_args.extend(["--url".into(), shell_quote(&a.url)]);
    }
    if let Some(p) = &a.token_file {
        let abs = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
        hook_args.extend(["--token-file".into(), shell_quote(&abs.to_string_lossy())]);
    }
    if a.claim_on_edit {
        hook_args.push("--claim-on-edit".into());
    }
    let wait = a.permission_wait.as_secs();
    let cmd = HookCommand {
        program: shell_quote(&program),
        args: hook_args.join(" "),
        permission_wait: (wait > 0).then_some(wait),
    };

    // What a dry run shows: only what cipc adds, not the whole file (a
    // user's ~/.claude.json is large and none of cipc's business).
    let mut mcp_preview = serde_json::json!({ "mcpServers": { settings::SERVER_NAME: entry } });
    for key in t.mcp_at.iter().rev() {
        mcp_preview = serde_json::json!({ key.as_str(): mcp_preview });
    }
    let mut hooks_preview = Value::Object(serde_json::Map::new());
    settings::add_hooks(&mut hooks_preview, &cmd).map_err(|e| CliError::error(e.to_string()))?;
    let changes = vec![
        edit_json(&t.mcp_file, a.dry_run, |doc| {
            settings::add_mcp(at_path(doc, &t.mcp_at)?, entry.clone())
        })?
        .labelled("cipc MCP server", Some(&mcp_preview)),
        edit_json(&t.settings_file, a.dry_run, |doc| {
            settings::add_hooks(doc, &cmd)
        })?
        .labelled("cipc hooks", Some(&hooks_preview)),
    ];
    report(&changes, a.dry_run);
    if !a.dry_run {
        println!(
            "Claude Code sessions started {} are now peers of role \"{}\" on {}.",
            match a.scope {
                Scope::User => "anywhere".to_string(),
                _ => format!(
                    "in {}",
                    t.settings_file
                        .parent()
                        .and_then(Path::parent)
                        .map_or_else(String::new, |p| p.display().to_string())
                ),
            },
            a.role,
            a.url
        );
        if token.is_some() && a.token_file.is_none() {
            println!("The broker has a token: start `claude` with CIPC_TOKEN set, so the hooks (and the MCP entry of a shared .mcp.json) can send it.");
        }
        if let Some(wait) = cmd.permission_wait {
            println!(
                "Permission prompts also reach the dashboard's \"Needs you\" and `cipc questions` for {} (the terminal asks too; the first answer wins).",
                humantime::format_duration(std::time::Duration::from_secs(wait))
            );
        }
        if a.scope == Scope::Project {
            println!("Claude Code shows a project's MCP server as pending until you trust the folder: start `claude` there once and accept.");
        }
    }
    if not_on_path {
        eprintln!(
            "cipc claude: warning: `cipc` is not on PATH, so the hooks cannot run it; put it there (e.g. `cargo install --path .` or copy {} into a PATH directory), or pass --cipc PATH",
            std::env::current_exe().map_or_else(|_| "the binary".to_string(), |p| p.display().to_string())
        );
    }
    Ok(())
}

/// The first executable called `name` in a directory of `PATH`.
fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|f| is_executable(f))
}

fn is_executable(f: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(f).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        f.is_file()
    }
}

fn remove(a: &RemoveArgs) -> Result<(), CliError> {
    let t = targets(a.scope, a.dir.as_deref())?;
    let mut changes = Vec::new();
    // A project's .mcp.json and any settings file that only held what
    // setup added are deleted rather than left as `{}` (which Claude Code
    // reports as an invalid mcpServers); ~/.claude.json holds much else and
    // is never deleted.
    let mcp_may_go = t.mcp_at.is_empty() && a.scope == Scope::Project;
    if t.mcp_file.exists() {
        changes.push(
            edit_json_or_delete(&t.mcp_file, a.dry_run, mcp_may_go, |doc| {
                if let Some(parent) = get_path(doc, &t.mcp_at) {
                    settings::remove_mcp(parent);
                }
                Ok(())
            })?
            .labelled("cipc MCP server", None),
        );
    }
    if t.settings_file.exists() {
        changes.push(
            edit_json_or_delete(&t.settings_file, a.dry_run, true, |doc| {
                settings::remove_hooks(doc).map(|_| ())
            })?
            .labelled("cipc hooks", None),
        );
    }
    report(&changes, a.dry_run);
    if a.scope == Scope::Project && !a.dry_run {
        // A `.claude/` setup created and left empty goes too.
        if let Some(dir) = t.settings_file.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
    Ok(())
}

/// What happened to one file.
struct Change {
    path: PathBuf,
    changed: bool,
    /// The file held only what cipc added, so it was deleted.
    deleted: bool,
    /// What cipc keeps in it, for the report.
    what: &'static str,
    /// What a dry run shows cipc would add (`None`: it would remove).
    preview: Option<String>,
}

impl Change {
    fn labelled(mut self, what: &'static str, preview: Option<&Value>) -> Change {
        self.what = what;
        self.preview = preview.map(|p| serde_json::to_string_pretty(p).unwrap_or_default());
        self
    }
}

fn report(changes: &[Change], dry_run: bool) {
    for c in changes {
        let what = c.what;
        match (c.changed, dry_run, &c.preview) {
            (true, false, _) if c.deleted => {
                println!("deleted    {} (it held only the {what})", c.path.display());
            }
            (true, true, _) if c.deleted => {
                println!(
                    "would delete {} (it holds only the {what})",
                    c.path.display()
                );
            }
            (false, _, _) => println!("unchanged  {} ({what})", c.path.display()),
            (true, false, _) => println!("updated    {} ({what})", c.path.display()),
            (true, true, Some(p)) => {
                println!(
                    "would add to {} ({what}), keeping everything else:",
                    c.path.display()
                );
                println!("{p}");
            }
            (true, true, None) => {
                println!(
                    "would remove the {what} from {}, and nothing else",
                    c.path.display()
                );
            }
        }
    }
}

/// Reads a JSON file (missing or blank: `{}`); a file that is not JSON is
/// refused, never overwritten.
fn read_json(path: &Path) -> Result<Value, CliError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(CliError::error(format!(
                "cannot read {}: {e}",
                path.display()
            )))
        }
    };
    if text.trim().is_empty() {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    serde_json::from_str(&text).map_err(|e| {
        CliError::error(format!(
            "{} is not valid JSON ({e}); fix it by hand first, nothing was changed",
            path.display()
        ))
    })
}

/// Reads a JSON file (missing: `{}`), applies `f`, and writes it back
/// atomically when it changed (unless `dry_run`).
fn edit_json(
    path: &Path,
    dry_run: bool,
    f: impl FnOnce(&mut Value) -> Result<(), ShapeError>,
) -> Result<Change, CliError> {
    edit_json_or_delete(path, dry_run, false, f)
}

/// Like [`edit_json`], but a file that `f` leaves as an empty object is
/// deleted (when `may_delete`) instead of written as `{}`.
fn edit_json_or_delete(
    path: &Path,
    dry_run: bool,
    may_delete: bool,
    f: impl FnOnce(&mut Value) -> Result<(), ShapeError>,
) -> Result<Change, CliError> {
    let mut doc = read_json(path)?;
    let original = doc.clone();
    f(&mut doc).map_err(|e| CliError::error(format!("{}: {e}", path.display())))?;
    let changed = doc != original;
    let deleted = changed && may_delete && doc.as_object().is_some_and(serde_json::Map::is_empty);
    if changed && !dry_run {
        if deleted {
            std::fs::remove_file(path)
                .map_err(|e| CliError::error(format!("cannot delete {}: {e}", path.display())))?;
        } else {
            let mut text = serde_json::to_string_pretty(&doc)
                .map_err(|e| CliError::error(format!("cannot write JSON: {e}")))?;
            text.push('\n');
            write_atomically(path, &text)?;
        }
    }
    Ok(Change {
        path: path.to_path_buf(),
        changed,
        deleted,
        what: "",
        preview: None,
    })
}

fn write_atomically(path: &Path, text: &str) -> Result<(), CliError> {
    let fail = |e: std::io::Error| CliError::error(format!("cannot write {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let tmp = path.with_extension(format!("cipc-{}.tmp", std::process::id()));
    std::fs::write(&tmp, text).map_err(fail)?;
    // Keep the file's permissions (~/.claude.json is private).
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(&tmp, meta.permissions());
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(e)
    })
}

/// The object at `path` inside `doc`, created as needed.
fn at_path<'a>(doc: &'a mut Value, path: &[String]) -> Result<&'a mut Value, ShapeError> {
    let mut v = doc;
    for key in path {
        let Some(obj) = v.as_object_mut() else {
            return Err(ShapeError::NotObjectAround(key.clone()));
        };
        v = obj
            .entry(key.clone())
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
    }
    Ok(v)
}

fn get_path<'a>(doc: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut v = doc;
    for key in path {
        v = v.as_object_mut()?.get_mut(key)?;
    }
    Some(v)
}
