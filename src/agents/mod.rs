//! Coding agents as peers: what makes a Claude Code or a Codex session a
//! cipc peer from its first moment, and reaches it between tool calls and
//! when it is idle.
//!
//! Both agents run command hooks at the same moments of a session
//! (session start, a prompt, before and after a tool, a permission prompt,
//! the end of a turn, the end of the session) with JSON on stdin, and both
//! talk MCP to the broker. So one engine ([`hook`]) does the work for both,
//! as the session's peer (its memory between runs: [`state`]); what differs
//! is said once per agent in [`Agent`], and what setup writes into each
//! agent's own configuration files lives in [`claude`] and [`codex`] (over
//! the shared file handling in [`files`]).
//!
//! `cli/` keeps only the argument parsing and printing of `cipc claude`,
//! `cipc codex` and `cipc hook`.

pub mod claude;
pub mod codex;
pub mod files;
pub mod hook;
pub(crate) mod host;
pub mod state;

use std::time::Duration;

/// Which coding agent a session is; `Peer.agent` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Agent {
    /// Anthropic's Claude Code CLI.
    #[default]
    ClaudeCode,
    /// OpenAI's Codex CLI.
    Codex,
}

impl Agent {
    /// Every agent, for parsers and help.
    pub const ALL: [Agent; 2] = [Agent::ClaudeCode, Agent::Codex];

    /// The wire name (`Peer.agent`, `cipc hook --agent`).
    pub fn id(self) -> &'static str {
        match self {
            Agent::ClaudeCode => "claude-code",
            Agent::Codex => "codex",
        }
    }

    /// The agent's name for people.
    pub fn title(self) -> &'static str {
        match self {
            Agent::ClaudeCode => "Claude Code",
            Agent::Codex => "Codex",
        }
    }

    /// The agent named by its wire name.
    pub fn from_id(id: &str) -> Option<Agent> {
        Agent::ALL.into_iter().find(|a| a.id() == id)
    }

    /// The command a person runs to start a session of this agent.
    pub fn program(self) -> &'static str {
        match self {
            Agent::ClaudeCode => "claude",
            Agent::Codex => "codex",
        }
    }
}

/// What both agents' setups write into every hook command line.
#[derive(Debug, Clone)]
pub struct HookCommand {
    /// The `cipc` executable, already quoted for the shell.
    pub program: String,
    /// `--role R --name N --url U ...`, already quoted (may be empty).
    pub args: String,
    /// How long a relayed permission prompt waits for the person (seconds);
    /// `None`: permission prompts are not relayed, only the terminal asks.
    pub permission_wait: Option<u64>,
}

impl HookCommand {
    /// The command line of the hook that handles `word` (`session-start`).
    pub fn line(&self, word: &str) -> String {
        if self.args.is_empty() {
            format!("{} hook {word}", self.program)
        } else {
            format!("{} hook {word} {}", self.program, self.args)
        }
    }

    /// The permission hook's line: the wait is spelled out when it is not
    /// the default.
    pub fn permission_line(&self, wait: u64) -> String {
        let mut line = self.line("permission");
        if wait != hook::DEFAULT_PERMISSION_WAIT_SECS {
            line.push_str(&format!(" --permission-wait {wait}"));
        }
        line
    }
}

/// What a person asks of setup, the same for every agent: which role the
/// sessions take, how the hooks reach the broker, where, and whether to
/// write at all. Each agent's setup adds only its own choices (its scopes).
#[derive(Debug, Clone)]
pub struct SetupRequest {
    /// The role every session takes.
    pub role: String,
    /// A name for the sessions' peers.
    pub name: Option<String>,
    /// The broker's URL.
    pub url: String,
    /// The broker's token, which the MCP server entry sends.
    pub token: Option<String>,
    /// The token file the hooks read.
    pub token_file: Option<std::path::PathBuf>,
    /// The `cipc` program the hooks run (`None`: see [`files::hook_program`]).
    pub cipc: Option<String>,
    /// How long a relayed permission prompt waits (zero: not relayed).
    pub permission_wait: Duration,
    /// Lease each file a session edits.
    pub claim_on_edit: bool,
    /// The project directory (default: the current one).
    pub dir: Option<std::path::PathBuf>,
    /// Say what would change, write nothing.
    pub dry_run: bool,
}

impl SetupRequest {
    /// The hook command for `agent`, run as `program`.
    pub fn command(&self, agent: Agent, program: &str) -> HookCommand {
        let mut args = Vec::new();
        if agent != Agent::ClaudeCode {
            // Hooks installed before there was a second agent carry no
            // --agent: Claude Code is the default.
            args.extend(["--agent".to_string(), agent.id().to_string()]);
        }
        args.extend(["--role".to_string(), shell_quote(&self.role)]);
        if let Some(n) = &self.name {
            args.extend(["--name".into(), shell_quote(n)]);
        }
        if self.url != crate::client::DEFAULT_URL {
            args.extend(["--url".into(), shell_quote(&self.url)]);
        }
        if let Some(p) = &self.token_file {
            args.extend(["--token-file".into(), token_file_arg(p)]);
        }
        if self.claim_on_edit {
            args.push("--claim-on-edit".into());
        }
        let wait = self.permission_wait.as_secs();
        HookCommand {
            program: shell_quote(program),
            args: args.join(" "),
            permission_wait: (wait > 0).then_some(wait),
        }
    }
}

/// The token file as a hook command names it: below the home directory as
/// `"$HOME"/...`, which the shell running the hook expands, so hooks in a
/// project's committed file work on every machine that keeps its token
/// there; anywhere else by its absolute path (see [`machine_path_warning`]).
fn token_file_arg(p: &std::path::Path) -> String {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(std::path::PathBuf::from);
    path_from_home(p, home.as_deref())
}

/// `p` as a hook command names it, given the home directory `home`.
fn path_from_home(p: &std::path::Path, home: Option<&std::path::Path>) -> String {
    let real = |p: &std::path::Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let abs = real(p);
    if let Some(rest) = home.and_then(|h| abs.strip_prefix(real(h)).ok()) {
        if !rest.as_os_str().is_empty() {
            return format!("\"$HOME\"/{}", shell_quote(&rest.to_string_lossy()));
        }
    }
    shell_quote(&abs.to_string_lossy())
}

/// A warning for project-scope setup, whose files a team commits, when the
/// hooks name a token file by a path of this machine only.
pub fn machine_path_warning(req: &SetupRequest) -> Option<String> {
    let p = req.token_file.as_ref()?;
    let arg = token_file_arg(p);
    (!arg.starts_with("\"$HOME\"")).then(|| {
        format!(
            "the hooks read the token file {arg}, a path of this machine: a teammate who uses this project's settings needs the token there too \
             (keep it under your home directory, e.g. ~/.config/cipc/token, and setup writes it as \"$HOME\"/..., which works on every machine)"
        )
    })
}

/// What setup or remove did, for the CLI to print.
#[derive(Debug, Default)]
pub struct Report {
    /// One entry per file looked at.
    pub changes: Vec<files::Change>,
    /// What the person should know next (printed after the changes).
    pub notes: Vec<String>,
    /// What may stop it from working (printed on stderr).
    pub warnings: Vec<String>,
}

/// Quotes `s` for a POSIX shell when it needs it.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Whether a hook command line is one cipc installed: its program is a
/// `cipc` executable and its first argument is `hook`.
pub fn is_ours(command: &str) -> bool {
    let command = command.trim_start();
    let (program, rest) = match command.strip_prefix('\'') {
        Some(quoted) => match quoted.split_once('\'') {
            Some((program, rest)) => (program, rest),
            None => return false,
        },
        None => command
            .split_once(char::is_whitespace)
            .unwrap_or((command, "")),
    };
    let base = program.rsplit('/').next().unwrap_or(program);
    (base == "cipc" || base == "cipc.exe") && rest.split_whitespace().next() == Some("hook")
}

/// Parses a permission wait: a duration from 0 (off) to 7 days.
pub fn parse_wait(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("{e}; write a duration like 10m or 1h, or 0 to relay nothing"))?;
    if d > Duration::from_secs(7 * 24 * 3600) {
        return Err("it must be at most 7 days".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::path_from_home;
    use std::path::Path;

    #[test]
    fn a_token_file_below_home_is_named_from_home_so_committed_hooks_work_everywhere() {
        let home = tempfile::tempdir().expect("home");
        let inside = home.path().join(".config/cipc/token");
        assert_eq!(
            path_from_home(&inside, Some(home.path())),
            "\"$HOME\"/.config/cipc/token"
        );
        let spaced = home.path().join("my tokens/t");
        assert_eq!(
            path_from_home(&spaced, Some(home.path())),
            "\"$HOME\"/'my tokens/t'"
        );
        let elsewhere = Path::new("/srv/cipc/token");
        assert_eq!(
            path_from_home(elsewhere, Some(home.path())),
            "/srv/cipc/token"
        );
        assert_eq!(path_from_home(elsewhere, None), "/srv/cipc/token");
    }
}
