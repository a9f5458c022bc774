//! The REST, MCP, question, lease, key, hardening and security suites again, with
//! their in-process brokers keeping state in PostgreSQL instead of memory
//! (`common::engine_is_postgres` picks the engine by this binary's name, for
//! `common::start*` and `common::test_store`, which the manual-clock brokers
//! of `api.rs` and `hardening.rs` use), so both engines answer the same
//! contract. Needs the server `.ci/start-postgres` starts
//! (`CIPC_TEST_POSTGRES`); outside CI, without it, the PostgreSQL run is
//! skipped with a notice (`common::skip`) and the suites run on memory.
//!
//! Not every test here runs on PostgreSQL: these run the built `cipc serve`
//! on its own store, because that store is what they are about, and so do
//! the same thing in this binary as in their own:
//! - `hardening::a_ttl_past_the_bound_is_a_400_and_breaks_nothing`,
//!   `hardening::healthz_reports_a_store_that_cannot_commit` (it stalls
//!   SQLite's write lock), `peer_keys::keys_survive_a_restart_of_the_durable_broker`
//!   and `questions::a_question_survives_a_restart_in_the_middle_of_a_wait`,
//!   `leases::held_leases_survive_a_restart_of_the_durable_broker`
//!   (a `--data-dir`, SQLite, restarted);
//! - `security::a_private_token_file_works_and_the_binary_enforces_it`
//!   (`--memory`: the token file is the subject).
//!
//! Security's other binary tests start no broker at all (a refused start,
//! `--generate-token`). `tests/nodes.rs` runs `cipc serve` nodes on
//! PostgreSQL.

// Each suite declares `mod common;` for itself, so this binary holds one copy
// per suite: that is what lets the files stay unchanged test binaries too.
#![allow(clippy::duplicate_mod)]

#[path = "api.rs"]
mod api;
#[path = "hardening.rs"]
mod hardening;
#[path = "leases.rs"]
mod leases;
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
