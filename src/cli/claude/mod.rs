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
    /// The cipc program the hooks run (default: this executable's absolute path).
    #[arg(long, value_name = "PATH")]
    pub cipc: Option<String>,
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

    let program = match &a.cipc {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| {
                CliError::error(format!(
                    "cannot find this executable ({e}); pass --cipc PATH"
                ))
            })?
            .to_string_lossy()
            .into_owned(),
    };
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
    let cmd = HookCommand {
        program: shell_quote(&program),
        args: hook_args.join(" "),
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
    }
    Ok(())
}

fn remove(a: &RemoveArgs) -> Result<(), CliError> {
    let t = targets(a.scope, a.dir.as_deref())?;
    let mut changes = Vec::new();
    if t.mcp_file.exists() {
        changes.push(
            edit_json(&t.mcp_file, a.dry_run, |doc| {
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
            edit_json(&t.settings_file, a.dry_run, |doc| {
                settings::remove_hooks(doc).map(|_| ())
            })?
            .labelled("cipc hooks", None),
        );
    }
    report(&changes, a.dry_run);
    Ok(())
}

/// What happened to one file.
struct Change {
    path: PathBuf,
    changed: bool,
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

/// Reads a JSON file (missing: `{}`), applies `f`, and writes it back
/// atomically when the text changed (unless `dry_run`).
fn edit_json(
    path: &Path,
    dry_run: bool,
    f: impl FnOnce(&mut Value) -> Result<(), ShapeError>,
) -> Result<Change, CliError> {
    let before = match std::fs::read_to_string(path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(CliError::error(format!(
                "cannot read {}: {e}",
                path.display()
            )))
        }
    };
    let mut doc: Value = match before.as_deref() {
        None => Value::Object(serde_json::Map::new()),
        Some(t) if t.trim().is_empty() => Value::Object(serde_json::Map::new()),
        Some(t) => serde_json::from_str(t).map_err(|e| {
            CliError::error(format!(
                "{} is not valid JSON ({e}); fix it by hand first, nothing was changed",
                path.display()
            ))
        })?,
    };
    let original = doc.clone();
    f(&mut doc).map_err(|e| CliError::error(format!("{}: {e}", path.display())))?;
    let mut text = serde_json::to_string_pretty(&doc)
        .map_err(|e| CliError::error(format!("cannot write JSON: {e}")))?;
    text.push('\n');
    let changed = doc != original;
    if changed && !dry_run {
        write_atomically(path, &text)?;
    }
    Ok(Change {
        path: path.to_path_buf(),
        changed,
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
