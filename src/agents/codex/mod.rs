//! Codex (OpenAI's Codex CLI): what `cipc codex setup` writes into its
//! configuration ([`setup`]): the MCP server in `config.toml` ([`config`])
//! and the hooks in `hooks.json` with the trust Codex requires
//! ([`hooks`]). What the hooks do is the shared engine's
//! ([`crate::agents::hook`]).

pub mod config;
pub mod hooks;
pub mod setup;
