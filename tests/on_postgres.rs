//! The REST, MCP, question, key and hardening suites again, with every
//! in-process broker keeping its state in PostgreSQL instead of memory
//! (`common::engine_is_postgres` picks the engine by this binary's name), so
//! both engines answer the same contract. Needs the server `.ci/start-postgres`
//! starts (`CIPC_TEST_POSTGRES`); outside CI, without it, the binary is skipped.

// Each suite declares `mod common;` for itself, so this binary holds one copy
// per suite: that is what lets the files stay unchanged test binaries too.
#![allow(clippy::duplicate_mod)]

#[path = "api.rs"]
mod api;
#[path = "hardening.rs"]
mod hardening;
#[path = "mcp.rs"]
mod mcp;
#[path = "mcp_identity.rs"]
mod mcp_identity;
#[path = "peer_keys.rs"]
mod peer_keys;
#[path = "questions.rs"]
mod questions;
#[path = "security.rs"]
mod security;
