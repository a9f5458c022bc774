//! cipc: a broker that lets several AI coding sessions and the people watching
//! them work together.
//!
//! The crate is a library so that integration tests (and the `cipc` binary) can
//! start a broker in-process. The layers, from the wire inwards:
//!
//! - [`api`]: the JSON wire types shared by the server, the client and MCP
//!   tools, and the limits both REST and MCP apply.
//! - [`error_code`]: the catalogue of refusals: each reason's stable wire
//!   code, its status class and so its HTTP status, mapped once.
//! - [`server`]: axum routes (REST, SSE, MCP, dashboard) over one [`broker::Broker`].
//! - [`broker`]: the state machine (peers, commands, channels, signals,
//!   questions, deadlines); no HTTP. Its rules are unit-tested on a manual
//!   clock in `src/broker/tests/`.
//!   Who may act as a peer is decided there once ([`broker::Caller`], peer keys
//!   in [`broker::keys`]), and every rule reads the time from one
//!   [`broker::clock::Clock`].
//! - [`store`]: durability behind one small trait (SQLite file, memory, or
//!   PostgreSQL shared by several nodes, which then take turns and follow
//!   one log: [`store::Turn`]), and [`store::Progress`], which says what is
//!   saved so nothing is shown before.
//! - [`client`] and [`cli`]: the `cipc` subcommands, clients of the HTTP API;
//!   [`agents`] makes Claude Code and Codex sessions peers through their
//!   hooks (`cipc claude setup`, `cipc codex setup`, `cipc hook`).
//!
//! Which files show each habit of the code base (after shared/DESIGN.md's
//! "Style"): `docs/style.md`.

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub mod agents;
pub mod api;
pub mod broker;
pub mod cli;
pub mod client;
pub mod error_code;
pub mod server;
pub mod store;
pub mod time;

// The binary's allocator (src/main.rs); a dependency of the package, not of the library.
use tikv_jemallocator as _;
