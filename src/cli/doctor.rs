//! `cipc doctor`: checks, one line each, what a client needs to work with
//! the broker, and says what to fix.
//!
//! The checks, in order (a check that cannot run because an earlier one
//! failed is skipped, not failed):
//!
//! 1. **broker**: something answers at the URL, and it is a cipc broker
//!    (`GET /healthz` answers the broker's `{"ok": true}`, and `GET /status`
//!    answers a status or the broker's own error document);
//! 2. **token**: a request that needs the token (`GET /status`) is accepted;
//! 3. **version**: the broker's version (from `/status`) is this client's;
//! 4. **peer**: `CIPC_PEER` (or the peer its key names) is known to the
//!    broker (`GET /peers/{id}`);
//! 5. **key**: `CIPC_PEER_KEY` proves that peer (a heartbeat, which only
//!    refreshes its last-seen time).
//!
//! Every check prints its line, whatever happens: a `CIPC_PEER` and
//! `CIPC_PEER_KEY` that do not fit together are the peer check failing, and
//! a broker that answers but cannot save changes (its store is down) fails
//! the broker check while the token and version checks still ask it.
//!
//! Exit 0 when every check passed (or was not needed), 1 otherwise.

use super::output::Output;
use super::{exit, CliError, ClientArgs, Ctx, Exit};
use crate::api::{StatusResponse, PEER_KEY_HEADER};
use crate::client::{Client, ClientError};
use crate::error_code::ErrorCode;
use clap::Args;
use serde::Serialize;

/// Flags of `cipc doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Broker, identity and output flags.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It works.
    Ok,
    /// It does not; `fix` says what to do.
    Fail,
    /// Not needed here, or not possible after an earlier failure.
    Skip,
}

/// One check: its name, how it came out, what was found and what to fix.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// broker, token, version, peer or key.
    pub name: &'static str,
    /// How it came out.
    pub outcome: Outcome,
    /// What was found, in one line.
    pub detail: String,
    /// What to do about a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            outcome: Outcome::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            outcome: Outcome::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    fn skip(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            outcome: Outcome::Skip,
            detail: detail.into(),
            fix: None,
        }
    }
}

/// The JSON document `cipc doctor --json` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report<'a> {
    /// True when nothing failed.
    ok: bool,
    /// The broker URL checked.
    url: &'a str,
    /// This client's version.
    client_version: &'a str,
    /// The checks, in order.
    checks: &'a [Check],
}

const CLIENT_VERSION: &str = env!("CARGO_PKG_VERSION");
const START_ONE: &str =
    "start one with `cipc serve` (it prints its URL), or point --url / CIPC_URL at the running one";
const NEW_PEER: &str =
    "eval \"$(cipc peers connect ROLE --export)\" sets both CIPC_PEER and CIPC_PEER_KEY";

/// Runs `cipc doctor`. `ctx` speaks for nobody: the peer and key of
/// `args` are judged here, so that a bad pair is a check line, not an
/// error before any check.
pub async fn run(args: DoctorArgs, mut ctx: Ctx) -> Result<Exit, CliError> {
    let have_token = args.client.token_file.is_some()
        || args
            .client
            .token
            .as_deref()
            .is_some_and(|t| !t.trim().is_empty());
    let identity = super::identity(&args.client, &ctx.client)
        .await
        .map(|(peer, key)| {
            ctx.client = ctx.client.clone().with_peer(peer).with_key(key);
        });
    let checks = checks(&ctx, have_token, identity).await;
    let ok = checks.iter().all(|c| c.outcome != Outcome::Fail);
    print(&ctx.out, ctx.client.base_url(), &checks, ok)?;
    Ok(if ok { exit::OK } else { exit::ERROR })
}

/// Runs every check, in order. `identity` is why `CIPC_PEER` and
/// `CIPC_PEER_KEY` cannot be used, when they cannot.
async fn checks(ctx: &Ctx, have_token: bool, identity: Result<(), CliError>) -> Vec<Check> {
    let url = ctx.client.base_url().to_string();
    // The broker, token and version checks speak for nobody, so that a bad
    // peer key (its own check) cannot make them fail too.
    let anonymous = ctx.client.anonymous();
    let mut checks = Vec::new();

    let (broker, answered) = broker_check(&anonymous, &url).await;
    checks.push(broker);
    if !answered {
        for name in ["token", "version"] {
            checks.push(Check::skip(name, "needs a broker to ask"));
        }
        // A malformed or mismatched pair is wrong whatever the broker says.
        match identity {
            Err(e) if e.code == exit::USAGE => identity_failed(&mut checks, e),
            _ => {
                checks.push(Check::skip("peer", "needs a broker to ask"));
                checks.push(Check::skip("key", "needs a broker to ask"));
            }
        }
        return checks;
    }

    let status = token_check(&anonymous, have_token, &mut checks).await;
    match &status {
        Asked::Status(s) if s.version == CLIENT_VERSION => checks.push(Check::ok(
            "version",
            format!("broker and client are both cipc {CLIENT_VERSION}"),
        )),
        Asked::Status(s) => checks.push(Check::fail(
            "version",
            format!("the broker is cipc {}, this client is cipc {CLIENT_VERSION}", s.version),
            "run the same version on both sides (install one build, e.g. `cargo install --path .`, and restart `cipc serve`)",
        )),
        Asked::Unavailable(why) => checks.push(Check::skip(
            "version",
            format!("the broker took the token but could not answer /status: {why}"),
        )),
        Asked::Refused => checks.push(Check::skip("version", "needs the token to ask the broker")),
    }
    if let Err(e) = identity {
        identity_failed(&mut checks, e);
        return checks;
    }
    if !matches!(status, Asked::Status(_)) {
        let why = match status {
            Asked::Unavailable(_) => "needs the broker's store, which is down",
            _ => "needs the token to ask the broker",
        };
        checks.push(Check::skip("peer", why));
        checks.push(Check::skip("key", why));
        return checks;
    }
    peer_checks(ctx, &anonymous, &mut checks).await;
    checks
}

/// The peer check failing because `CIPC_PEER` and `CIPC_PEER_KEY` cannot be
/// used (malformed, naming different peers, or a part of an id the broker
/// could not resolve); the key check cannot run then.
fn identity_failed(checks: &mut Vec<Check>, e: CliError) {
    let problem = e
        .message
        .unwrap_or_else(|| "CIPC_PEER / CIPC_PEER_KEY cannot be used".to_string());
    checks.push(Check::fail(
        "peer",
        problem,
        format!("unset CIPC_PEER (the key names its own peer), or export both again from one peer: {NEW_PEER}"),
    ));
    checks.push(Check::skip(
        "key",
        "no peer to prove until CIPC_PEER and CIPC_PEER_KEY agree",
    ));
}

/// What asking `GET /status` with the token found.
enum Asked {
    /// The broker's status.
    Status(Box<StatusResponse>),
    /// The token was taken (the front door passed it), but the broker could
    /// not answer: its store is down.
    Unavailable(String),
    /// The token was refused or missing; the check line says which.
    Refused,
}

/// Something answers at the URL, and it is a cipc broker. The flag says
/// whether a cipc broker answered at all (it may fail the check and still
/// answer: a broker whose store is down says so in its own error shape,
/// and the token and version checks can still ask it).
async fn broker_check(client: &Client, url: &str) -> (Check, bool) {
    match client.healthz().await {
        Ok(r) if r.ok => {}
        Ok(_) => {
            return (
                Check::fail(
                    "broker",
                    format!("{url} answered /healthz with \"ok\": false"),
                    "see the broker's log (stderr of `cipc serve`)",
                ),
                false,
            )
        }
        Err(ClientError::Unreachable { reason, .. }) => {
            return (
                Check::fail(
                    "broker",
                    format!("nothing answers at {url} ({reason})"),
                    START_ONE,
                ),
                false,
            )
        }
        Err(ref e @ ClientError::Api { ref message, .. }) if e.store_down() => {
            let fix = if message.contains("PostgreSQL") {
                "check that PostgreSQL is up and reachable from the broker (it reconnects by itself)"
            } else {
                "check the disk and the data directory (the broker's log says more), then restart it"
            };
            return (
                Check::fail(
                    "broker",
                    format!("the cipc broker at {url} answers but cannot save changes: {message}"),
                    fix,
                ),
                true,
            );
        }
        Err(e) => return (not_a_broker(url, &e), false),
    }
    // A healthz of {"ok": true} is common; the broker's own error shape or
    // status document proves it is cipc.
    let check = match client.status().await {
        Ok(s) => Check::ok("broker", format!("cipc {} at {url}", s.version)),
        Err(ClientError::Api { .. }) => Check::ok("broker", format!("a cipc broker at {url}")),
        Err(ClientError::Unreachable { reason, .. }) => Check::fail(
            "broker",
            format!("{url} stopped answering ({reason})"),
            START_ONE,
        ),
        Err(e) => not_a_broker(url, &e),
    };
    let answered = check.outcome == Outcome::Ok;
    (check, answered)
}

fn not_a_broker(url: &str, e: &ClientError) -> Check {
    Check::fail(
        "broker",
        format!("{url} is not a cipc broker: {e}"),
        "point --url / CIPC_URL at the broker: `cipc serve` prints the URL it listens on",
    )
}

/// A request that needs the token is accepted; the broker's status when it is.
async fn token_check(client: &Client, have: bool, checks: &mut Vec<Check>) -> Asked {
    let accepted = if have {
        "accepted"
    } else {
        "none needed (the broker requires none)"
    };
    match client.status().await {
        Ok(s) => {
            checks.push(Check::ok("token", accepted));
            Asked::Status(Box::new(s))
        }
        // The token is checked before anything else: a 503 got past it.
        Err(ref e @ ClientError::Api { ref message, .. }) if e.store_down() => {
            checks.push(Check::ok("token", accepted));
            Asked::Unavailable(message.clone())
        }
        Err(e) if e.reason() == Some(ErrorCode::BadToken) && !have => {
            checks.push(Check::fail(
                "token",
                "the broker requires a token and none was given",
                "set CIPC_TOKEN (or pass --token-file PATH) to the token the broker was started with",
            ));
            Asked::Refused
        }
        Err(e) if e.reason() == Some(ErrorCode::BadToken) => {
            checks.push(Check::fail(
                "token",
                "the broker refused the token",
                "use the token the broker was started with (its CIPC_TOKEN, --token or --token-file)",
            ));
            Asked::Refused
        }
        Err(ClientError::Api {
            reason: Some(ErrorCode::TooManyWrongTokens),
            message,
            ..
        }) => {
            checks.push(Check::fail(
                "token",
                format!("the broker is slowing down wrong tokens: {message}"),
                "fix the token, then wait a minute before trying again",
            ));
            Asked::Refused
        }
        Err(e) => {
            checks.push(Check::fail(
                "token",
                format!("GET /status failed: {e}"),
                "see the broker's log (stderr of `cipc serve`)",
            ));
            Asked::Refused
        }
    }
}

/// The peer is known, and the key proves it.
async fn peer_checks(ctx: &Ctx, anonymous: &Client, checks: &mut Vec<Check>) {
    let Some(peer) = ctx.client.peer() else {
        checks.push(Check::skip(
            "peer",
            "none set (CIPC_PEER); only needed to take orders (`cipc wait`) or act as a peer",
        ));
        checks.push(Check::skip("key", "no peer to prove"));
        return;
    };
    let id = peer.to_string();
    let p = match anonymous.peer_info(&id).await {
        Ok(r) => r.peer,
        Err(e) if e.reason() == Some(ErrorCode::UnknownPeer) => {
            checks.push(Check::fail(
                "peer",
                format!("the broker knows no peer {id} (an offline peer is forgotten after a day, and `cipc reset` forgets all)"),
                format!("register again: {NEW_PEER}"),
            ));
            checks.push(Check::skip("key", "no peer to prove"));
            return;
        }
        Err(e) => {
            checks.push(Check::fail(
                "peer",
                format!("cannot look up peer {id}: {e}"),
                "see the broker's log (stderr of `cipc serve`)",
            ));
            checks.push(Check::skip("key", "no peer to prove"));
            return;
        }
    };
    checks.push(Check::ok(
        "peer",
        format!("{id} is a {} peer, {}", p.role, p.status.as_str()),
    ));
    let Some(_) = ctx.client.key() else {
        if p.protected {
            checks.push(Check::fail(
                "key",
                format!("no CIPC_PEER_KEY, and peer {id} is protected: every request naming it is refused"),
                format!("set CIPC_PEER_KEY to its key ({NEW_PEER}; a new shell needs both exported)"),
            ));
        } else {
            checks.push(Check::skip("key", "none set; this peer is not protected"));
        }
        return;
    };
    match ctx.client.heartbeat(&id).await {
        Ok(_) => checks.push(Check::ok(
            "key",
            format!("proves peer {id} ({PEER_KEY_HEADER} accepted)"),
        )),
        Err(ClientError::Api {
            reason: Some(ErrorCode::KeyRequired | ErrorCode::WrongKey),
            message,
            ..
        }) => checks.push(Check::fail(
            "key",
            format!("the broker refused CIPC_PEER_KEY for peer {id}: {message}"),
            format!("export the key that came with this peer id ({NEW_PEER})"),
        )),
        Err(e) if e.store_down() => checks.push(Check::skip(
            "key",
            "not tried: proving it is a heartbeat, a change the broker cannot save now",
        )),
        Err(e) => checks.push(Check::fail(
            "key",
            format!("cannot check the key: {e}"),
            "see the broker's log (stderr of `cipc serve`)",
        )),
    }
}

fn print(out: &Output, url: &str, checks: &[Check], ok: bool) -> Result<(), CliError> {
    if out.json {
        return out.json(&Report {
            ok,
            url,
            client_version: CLIENT_VERSION,
            checks,
        });
    }
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for c in checks {
        let mark = match c.outcome {
            Outcome::Ok => out.paint("✓", true),
            Outcome::Fail => out.paint("✗", false),
            Outcome::Skip => "-".to_string(),
        };
        let fix = c
            .fix
            .as_deref()
            .map(|f| format!("; fix: {f}"))
            .unwrap_or_default();
        out.line(&format!("{mark} {:width$}  {}{fix}", c.name, c.detail))?;
    }
    Ok(())
}
