//! Claude Code: what `cipc claude setup` writes into its configuration
//! ([`setup`], over the JSON merge rules in [`settings`]), and what a hook
//! can tell about the Claude Code process that runs it (`process`).

pub(crate) mod process;
pub mod settings;
pub mod setup;
