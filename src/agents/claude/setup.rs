//! `cipc claude setup | remove`: what is written where, as Claude Code reads
//! it.
//!
//! | scope | MCP server | hooks |
//! |---|---|---|
//! | `project` (shared, in git) | `.mcp.json` | `.claude/settings.json` |
//! | `local` (this project, only you) | `~/.claude.json`, under the project | `.claude/settings.local.json` |
//! | `user` (every project) | `~/.claude.json` | `~/.claude/settings.json` |
//!
//! Files are merged, never replaced: other servers, hooks and keys stay as
//! they were; running setup twice changes nothing; `remove` takes out what
//! setup added and nothing else.

use super::settings::{self, ShapeError};
use crate::agents::files::{self, edit_json, project_dir};
use crate::agents::{Agent, Report, SetupRequest};
use crate::cli::CliError;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Which Claude Code configuration to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// This project, shared with the team: .mcp.json and .claude/settings.json.
    Project,
    /// This project, only for you: ~/.claude.json and .claude/settings.local.json.
    Local,
    /// Every project of yours: ~/.claude.json and ~/.claude/settings.json.
    User,
}

/// What `cipc claude setup` is asked to do.
#[derive(Debug, Clone)]
pub struct Setup {
    /// What every agent's setup takes.
    pub request: SetupRequest,
    /// Which configuration to write.
    pub scope: Scope,
    /// Use the older HTTP+SSE transport (`/mcp/sse`) instead of `/mcp`.
    pub sse: bool,
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
    let project = project_dir(dir)?;
    let configured = || std::env::var_os("CLAUDE_CONFIG_DIR").filter(|d| !d.is_empty());
    let config_dir = || -> Result<PathBuf, CliError> {
        match configured() {
            Some(d) => Ok(PathBuf::from(d)),
            None => Ok(files::home(Agent::ClaudeCode.title())?.join(".claude")),
        }
    };
    // Claude Code keeps user-wide MCP servers in ~/.claude.json, beside (not
    // in) ~/.claude; with CLAUDE_CONFIG_DIR it is inside that directory.
    let user_config = || -> Result<PathBuf, CliError> {
        match configured() {
            Some(d) => Ok(PathBuf::from(d).join(".claude.json")),
            None => Ok(config_dir()?.with_file_name(".claude.json")),
        }
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

/// Writes the MCP server and the hooks (or, in a dry run, says what it would).
pub fn setup(a: &Setup) -> Result<Report, CliError> {
    let h = &a.request;
    crate::api::validate_name("role", &h.role).map_err(|e| CliError::usage(e.to_string()))?;
    crate::client::Client::new(&h.url, None, None)?;
    let t = targets(a.scope, h.dir.as_deref())?;
    // A shared file never holds the secret: Claude Code expands ${CIPC_TOKEN}.
    let header = h.token.as_ref().map(|t| match a.scope {
        Scope::Project => "${CIPC_TOKEN}".to_string(),
        Scope::Local | Scope::User => t.clone(),
    });
    let entry = settings::mcp_entry(&h.url, a.sse, header.as_deref());
    let (program, not_on_path) = files::hook_program(h.cipc.as_deref(), a.scope == Scope::Project)?;
    let cmd = h.command(Agent::ClaudeCode, &program);

    // What a dry run shows: only what cipc adds, not the whole file (a
    // user's ~/.claude.json is large and none of cipc's business).
    let mut mcp_preview = serde_json::json!({ "mcpServers": { settings::SERVER_NAME: entry } });
    for key in t.mcp_at.iter().rev() {
        mcp_preview = serde_json::json!({ key.as_str(): mcp_preview });
    }
    let mut hooks_preview = Value::Object(serde_json::Map::new());
    settings::add_hooks(&mut hooks_preview, &cmd).map_err(|e| CliError::error(e.to_string()))?;
    let pretty = |v: &Value| serde_json::to_string_pretty(v).ok();
    let mut report = Report {
        changes: vec![
            edit_json(&t.mcp_file, h.dry_run, false, |doc| {
                settings::add_mcp(at_path(doc, &t.mcp_at)?, entry.clone())
            })?
            .labelled("cipc MCP server", pretty(&mcp_preview)),
            edit_json(&t.settings_file, h.dry_run, false, |doc| {
                settings::add_hooks(doc, &cmd)
            })?
            .labelled("cipc hooks", pretty(&hooks_preview)),
        ],
        ..Report::default()
    };
    if !h.dry_run {
        let where_ = match a.scope {
            Scope::User => "anywhere".to_string(),
            _ => format!(
                "in {}",
                t.settings_file
                    .parent()
                    .and_then(Path::parent)
                    .map_or_else(String::new, |p| p.display().to_string())
            ),
        };
        report.notes.push(format!(
            "Claude Code sessions started {where_} are now peers of role \"{}\" on {}.",
            h.role, h.url
        ));
        if h.token.is_some() && h.token_file.is_none() {
            report.notes.push("The broker has a token: start `claude` with CIPC_TOKEN set, so the hooks (and the MCP entry of a shared .mcp.json) can send it.".into());
        }
        if let Some(wait) = cmd.permission_wait {
            report.notes.push(format!(
                "Permission prompts also reach the dashboard's \"Needs you\" and `cipc questions` for {} (the terminal asks too; the first answer wins).",
                humantime::format_duration(std::time::Duration::from_secs(wait))
            ));
        }
        if a.scope == Scope::Project {
            report.notes.push("Claude Code shows a project's MCP server as pending until you trust the folder: start `claude` there once and accept.".into());
        }
    }
    if not_on_path {
        report.warnings.push(files::not_on_path_warning());
    }
    if a.scope == Scope::Project {
        report
            .warnings
            .extend(crate::agents::machine_path_warning(h));
    }
    Ok(report)
}

/// Takes out exactly what [`setup`] added to `scope`'s files.
pub fn remove(scope: Scope, dir: Option<&Path>, dry_run: bool) -> Result<Report, CliError> {
    let t = targets(scope, dir)?;
    let mut report = Report::default();
    // A project's .mcp.json and any settings file that only held what
    // setup added are deleted rather than left as `{}` (which Claude Code
    // reports as an invalid mcpServers); ~/.claude.json holds much else and
    // is never deleted.
    let mcp_may_go = t.mcp_at.is_empty() && scope == Scope::Project;
    if t.mcp_file.exists() {
        report.changes.push(
            edit_json(&t.mcp_file, dry_run, mcp_may_go, |doc| {
                if let Some(parent) = get_path(doc, &t.mcp_at) {
                    settings::remove_mcp(parent);
                }
                Ok::<(), ShapeError>(())
            })?
            .labelled("cipc MCP server", None),
        );
    }
    if t.settings_file.exists() {
        report.changes.push(
            edit_json(&t.settings_file, dry_run, true, |doc| {
                settings::remove_hooks(doc).map(|_| ())
            })?
            .labelled("cipc hooks", None),
        );
    }
    if scope == Scope::Project && !dry_run {
        // A `.claude/` setup created and left empty goes too.
        if let Some(dir) = t.settings_file.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
    Ok(report)
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
