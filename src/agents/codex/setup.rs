//! `cipc codex setup | remove`: what is written where, as Codex (0.171)
//! reads it.
//!
//! | scope | MCP server | hooks | trust of the hooks |
//! |---|---|---|---|
//! | `project` | `.codex/config.toml` | `.codex/hooks.json` | `$CODEX_HOME/config.toml` |
//! | `user` | `$CODEX_HOME/config.toml` | `$CODEX_HOME/hooks.json` | `$CODEX_HOME/config.toml` |
//!
//! `$CODEX_HOME` is `~/.codex` unless set. Codex reads a project's
//! `.codex/` only once the person trusted the project, and runs a hook from
//! a file only once its exact command is trusted; setup records that trust
//! for cipc's hooks (the person running setup is reviewing them) and for
//! nothing else. Files are merged, never replaced; setup twice changes
//! nothing; remove takes out what setup added and nothing else.

use super::config::{self, TokenHeader};
use super::hooks;
use crate::agents::files::{self, commit, edit_json, project_dir, read_text, Change};
use crate::agents::{Agent, Report, SetupRequest};
use crate::cli::CliError;
use std::path::{Path, PathBuf};

/// Which Codex configuration to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// This project: .codex/config.toml and .codex/hooks.json.
    Project,
    /// Every project of yours: $CODEX_HOME/config.toml and hooks.json.
    User,
}

/// What `cipc codex setup` is asked to do.
#[derive(Debug, Clone)]
pub struct Setup {
    /// What every agent's setup takes.
    pub request: SetupRequest,
    /// Which configuration to write.
    pub scope: Scope,
}

/// The files a scope touches.
struct Targets {
    /// Where the MCP server goes.
    config: PathBuf,
    /// Where the hooks go.
    hooks: PathBuf,
    /// The user's config.toml, which holds the hooks' trust.
    user_config: PathBuf,
}

/// `$CODEX_HOME`, or `~/.codex`.
pub fn codex_home() -> Result<PathBuf, CliError> {
    match std::env::var_os("CODEX_HOME").filter(|d| !d.is_empty()) {
        Some(d) => Ok(PathBuf::from(d)),
        None => Ok(files::home(Agent::Codex.title())?.join(".codex")),
    }
}

fn targets(scope: Scope, dir: Option<&Path>) -> Result<Targets, CliError> {
    let home = codex_home()?;
    // Codex keys trust by the hooks file's absolute path.
    let home = std::fs::canonicalize(&home).unwrap_or(home);
    let user_config = home.join("config.toml");
    Ok(match scope {
        Scope::Project => {
            let project = project_dir(dir)?.join(".codex");
            Targets {
                config: project.join("config.toml"),
                hooks: project.join("hooks.json"),
                user_config,
            }
        }
        Scope::User => Targets {
            config: user_config.clone(),
            hooks: home.join("hooks.json"),
            user_config,
        },
    })
}

/// Writes the MCP server, the hooks and their trust (or, in a dry run,
/// says what it would).
pub fn setup(a: &Setup) -> Result<Report, CliError> {
    let h = &a.request;
    crate::api::validate_name("role", &h.role).map_err(|e| CliError::usage(e.to_string()))?;
    crate::client::Client::new(&h.url, None, None)?;
    let t = targets(a.scope, h.dir.as_deref())?;
    let token = match (&h.token, a.scope) {
        (None, _) => TokenHeader::None,
        // A project's file may be shared: Codex reads the token from the
        // environment it starts in.
        (Some(_), Scope::Project) => TokenHeader::FromEnv("CIPC_TOKEN".into()),
        (Some(t), Scope::User) => TokenHeader::Literal(t.clone()),
    };
    let (program, not_on_path) = files::hook_program(h.cipc.as_deref(), a.scope == Scope::Project)?;
    let cmd = h.command(Agent::Codex, &program);

    // The hooks file first: the trust entries are computed from it as written.
    let mut hooks_doc = files::read_json(&t.hooks)?;
    let before_hooks = hooks_doc.clone();
    let old_trust = hooks::trust_entries(&hooks_doc, &t.hooks);
    hooks::add_hooks(&mut hooks_doc, &cmd)
        .map_err(|e| CliError::error(format!("{}: {e}", t.hooks.display())))?;
    let trust = hooks::trust_entries(&hooks_doc, &t.hooks);
    let hooks_text = pretty(&hooks_doc)?;

    // Every file is worked out before any is written: a config.toml that
    // cannot be read leaves the hooks file untouched too.
    let config_plan = plan_toml(&t.config, false, "cipc MCP server", |doc| {
        config::add_mcp(doc, &h.url, &token)?;
        if t.config == t.user_config {
            replace_trust(doc, &old_trust, &trust)?;
        }
        Ok(())
    })?;
    let trust_plan = if t.config == t.user_config {
        None
    } else {
        Some(plan_toml(
            &t.user_config,
            false,
            "trust of cipc's hooks",
            |doc| replace_trust(doc, &old_trust, &trust),
        )?)
    };
    let hooks_preview = h.dry_run.then(|| preview_hooks(&cmd)).flatten();
    let mut changes = vec![
        config_plan.commit(h.dry_run)?,
        commit(
            &t.hooks,
            h.dry_run,
            hooks_doc != before_hooks,
            Some(hooks_text),
        )?
        .labelled("cipc hooks", hooks_preview),
    ];
    if let Some(plan) = trust_plan {
        let preview = h.dry_run.then(|| preview_trust(&trust));
        changes.push(
            plan.commit(h.dry_run)?
                .labelled("trust of cipc's hooks", preview),
        );
    }
    if h.dry_run {
        if let Some(first) = changes.first_mut() {
            first.preview = first.changed.then(|| preview_mcp(&h.url, &token)).flatten();
        }
    }
    let mut report = Report {
        changes,
        ..Report::default()
    };
    if !h.dry_run {
        let where_ = match a.scope {
            Scope::User => "anywhere".to_string(),
            Scope::Project => format!("in {}", project_dir(h.dir.as_deref())?.display()),
        };
        report.notes.push(format!(
            "Codex sessions started {where_} are now peers of role \"{}\" on {}.",
            h.role, h.url
        ));
        report.notes.push(format!(
            "Setup trusted cipc's {} hooks in {} (Codex runs no hook it has not been told to trust); cipc's MCP tools run without asking.",
            trust.len(),
            t.user_config.display()
        ));
        if matches!(token, TokenHeader::FromEnv(_)) {
            report.notes.push("The broker has a token: start `codex` with CIPC_TOKEN set, so the MCP server and the hooks can send it.".into());
        }
        if a.scope == Scope::Project {
            report.notes.push("Codex reads a project's .codex/ only once you trust the project: start `codex` there once and accept.".into());
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
    let old_trust: Vec<String> = if t.hooks.exists() {
        hooks::trust_entries(&files::read_json(&t.hooks)?, &t.hooks)
            .into_iter()
            .map(|tr| tr.key)
            .collect()
    } else {
        Vec::new()
    };
    if t.config.exists() {
        // A project's config.toml that held only cipc's server goes; the
        // user's own stays, even empty.
        let may_delete = t.config != t.user_config;
        let plan = plan_toml(&t.config, may_delete, "cipc MCP server", |doc| {
            config::remove_mcp(doc);
            if t.config == t.user_config {
                config::remove_trust(doc, &old_trust);
            }
            Ok(())
        })?;
        report.changes.push(plan.commit(dry_run)?);
    }
    if t.hooks.exists() {
        report.changes.push(
            edit_json(&t.hooks, dry_run, true, |doc| {
                hooks::remove_hooks(doc).map(|_| ())
            })?
            .labelled("cipc hooks", None),
        );
    }
    if t.config != t.user_config && t.user_config.exists() && !old_trust.is_empty() {
        let plan = plan_toml(&t.user_config, false, "trust of cipc's hooks", |doc| {
            config::remove_trust(doc, &old_trust);
            Ok(())
        })?;
        report.changes.push(plan.commit(dry_run)?);
    }
    if scope == Scope::Project && !dry_run {
        // A `.codex/` setup created and left empty goes too.
        if let Some(dir) = t.hooks.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
    Ok(report)
}

/// Trust for the hooks as they are now, none for where they were before.
fn replace_trust(
    doc: &mut toml_edit::DocumentMut,
    old: &[hooks::Trust],
    new: &[hooks::Trust],
) -> Result<(), config::ConfigError> {
    let stale: Vec<String> = old.iter().map(|t| t.key.clone()).collect();
    config::remove_trust(doc, &stale);
    config::add_trust(doc, new)
}

/// A TOML file's new content, worked out but not yet written.
struct TomlPlan {
    path: PathBuf,
    what: &'static str,
    changed: bool,
    /// `None`: delete the file.
    text: Option<String>,
}

impl TomlPlan {
    fn commit(self, dry_run: bool) -> Result<Change, CliError> {
        Ok(commit(&self.path, dry_run, self.changed, self.text)?.labelled(self.what, None))
    }
}

/// Reads a TOML file (missing: empty) and applies `f`; one that `f` leaves
/// blank is to be deleted when `may_delete`.
fn plan_toml(
    path: &Path,
    may_delete: bool,
    what: &'static str,
    f: impl FnOnce(&mut toml_edit::DocumentMut) -> Result<(), config::ConfigError>,
) -> Result<TomlPlan, CliError> {
    let text = read_text(path)?;
    let fail = |e: config::ConfigError| CliError::error(format!("{}: {e}", path.display()));
    let mut doc = config::parse(&text).map_err(fail)?;
    f(&mut doc).map_err(fail)?;
    let new = doc.to_string();
    let keep = !(may_delete && new.trim().is_empty());
    Ok(TomlPlan {
        path: path.to_path_buf(),
        what,
        changed: new != text,
        text: keep.then_some(new),
    })
}

fn pretty(doc: &serde_json::Value) -> Result<String, CliError> {
    let mut text = serde_json::to_string_pretty(doc)
        .map_err(|e| CliError::error(format!("cannot write JSON: {e}")))?;
    text.push('\n');
    Ok(text)
}

/// What a dry run shows of the hooks: only cipc's.
fn preview_hooks(cmd: &crate::agents::HookCommand) -> Option<String> {
    let mut doc = serde_json::json!({});
    hooks::add_hooks(&mut doc, cmd).ok()?;
    serde_json::to_string_pretty(&doc).ok()
}

/// What a dry run shows of the trust entries.
fn preview_trust(trust: &[hooks::Trust]) -> String {
    let mut doc = toml_edit::DocumentMut::new();
    // Only the fresh document is written to, so this cannot fail.
    let _ = config::add_trust(&mut doc, trust);
    doc.to_string().trim_end().to_string()
}

/// What a dry run shows of the MCP entry: only cipc's.
fn preview_mcp(url: &str, token: &TokenHeader) -> Option<String> {
    let mut doc = config::parse("").ok()?;
    let shown = match token {
        TokenHeader::Literal(_) => TokenHeader::Literal("<the token>".into()),
        other => other.clone(),
    };
    config::add_mcp(&mut doc, url, &shown).ok()?;
    Some(doc.to_string().trim_end().to_string())
}
