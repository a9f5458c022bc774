//! `cipc peers`: see who is online, register a session, and manage peers.

use super::output::{ago, Output};
use super::Exit;
use super::{CliError, ClientArgs, Ctx};
use crate::api::{ConnectRequest, Peer, PeerStatus, Via};
use crate::client::ClientError;
use clap::{Args, Subcommand};
use uuid::Uuid;

/// Flags of `cipc peers`.
#[derive(Debug, Args)]
pub struct PeersArgs {
    /// Broker, identity and output flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// What to do (default: list).
    #[command(subcommand)]
    pub cmd: Option<PeersCmd>,
}

/// The `cipc peers` subcommands.
#[derive(Debug, Subcommand)]
pub enum PeersCmd {
    /// List every known peer with its status (the default).
    List,
    /// List online peers and the roles they hold.
    Discover,
    /// Register this session as a protected peer with ROLE and print it with
    /// its key (needed to act as it; reconnecting with --id needs it too).
    /// When CIPC_PEER and CIPC_PEER_KEY already name a peer of ROLE, that
    /// peer is reconnected (same id, same key) instead; --new registers
    /// another one.
    Connect {
        /// The role to take, e.g. backend (1-64 of A-Z a-z 0-9 . _ -).
        role: String,
        /// A capability tag; repeatable, or comma-separated.
        #[arg(long = "cap", value_name = "CAP", value_delimiter = ',')]
        caps: Vec<String>,
        /// A human-friendly name.
        #[arg(long)]
        name: Option<String>,
        /// Reconnect as this known peer id instead of getting a new one.
        #[arg(long, value_name = "ID")]
        id: Option<Uuid>,
        /// Register a new peer even when CIPC_PEER names one of this role.
        #[arg(long, conflicts_with = "id")]
        new: bool,
        /// Print only `export CIPC_PEER=<id> CIPC_PEER_KEY=<key>`, for
        /// eval "$(cipc peers connect ROLE --export)". The key proves this
        /// peer; keep it out of logs.
        #[arg(long)]
        export: bool,
    },
    /// Show one peer (default: --peer / CIPC_PEER).
    Show {
        /// The peer id: whole, or a unique part of at least 6 characters.
        id: Option<String>,
    },
    /// Disconnect a peer: it goes offline and its unacked commands are pending again.
    Disconnect {
        /// The peer id, whole or a unique part (default: --peer / CIPC_PEER).
        id: Option<String>,
    },
    /// Forget a peer for good (its key too): an offline one needs no key,
    /// an online one is forgotten only by itself. Its unacked commands are
    /// pending again.
    Forget {
        /// The peer id, whole or a unique part.
        id: String,
    },
    /// Forget every offline peer (the ghosts of sessions that ended), or
    /// only those offline for at least --older-than.
    Prune {
        /// Only peers last seen at least this long ago (e.g. 1h, 2days).
        #[arg(long, value_name = "DURATION", value_parser = super::args::parse_span)]
        older_than: Option<std::time::Duration>,
        /// List what would be forgotten, and forget nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Tell the broker this peer is alive (default: --peer / CIPC_PEER).
    Heartbeat {
        /// The peer id: whole, or a unique part of at least 6 characters.
        id: Option<String>,
    },
    /// Say why a person is needed now (shown in `cipc peers` and the
    /// dashboard); without TEXT, clear it. Acts as --peer / CIPC_PEER.
    Attention {
        /// One line for the person, e.g. "waiting for approval of the schema change".
        text: Option<String>,
    },
}

impl PeersCmd {
    /// The subcommand's name, as typed.
    pub fn name(&self) -> &'static str {
        match self {
            PeersCmd::List => "list",
            PeersCmd::Discover => "discover",
            PeersCmd::Connect { .. } => "connect",
            PeersCmd::Show { .. } => "show",
            PeersCmd::Disconnect { .. } => "disconnect",
            PeersCmd::Forget { .. } => "forget",
            PeersCmd::Prune { .. } => "prune",
            PeersCmd::Heartbeat { .. } => "heartbeat",
            PeersCmd::Attention { .. } => "attention",
        }
    }
}

/// Runs `cipc peers ...`; returns the exit code.
pub async fn run(args: PeersArgs, ctx: Ctx) -> Result<Exit, CliError> {
    let out = ctx.out;
    match args.cmd.unwrap_or(PeersCmd::List) {
        PeersCmd::List => {
            let r = ctx.client.peers().await?;
            if out.json {
                out.json(&r)?;
            } else if r.peers.is_empty() {
                out.line("no peers yet; register one with `cipc peers connect ROLE`")?;
            } else {
                out.table(peer_table(&out, &r.peers))?;
            }
        }
        PeersCmd::Discover => {
            let r = ctx.client.discover().await?;
            if out.json {
                out.json(&r)?;
            } else if r.peers.is_empty() {
                out.line("nobody is online")?;
            } else {
                out.table(peer_table(&out, &r.peers))?;
                out.line(&format!(
                    "{} online; roles: {}",
                    r.count,
                    r.roles.join(", ")
                ))?;
            }
        }
        PeersCmd::Connect {
            role,
            caps,
            name,
            id,
            new,
            export,
        } => {
            // This shell's peer, when it has the same role, is reconnected
            // rather than joined by another: running a setup twice leaves
            // one peer, not a ghost.
            let mut id = id;
            let mut again = false;
            if id.is_none() && !new {
                if let Some(me) = same_role_peer(&ctx, &role).await? {
                    id = Some(me);
                    again = true;
                }
            }
            // The CLI always protects its peers. Reconnecting proves the old
            // peer with CIPC_PEER_KEY; a new peer is registered by nobody.
            let client = match id {
                Some(id) if ctx.client.peer() == Some(id) => ctx.client.clone(),
                Some(_) | None => ctx.client.anonymous(),
            };
            let req = ConnectRequest {
                role,
                capabilities: (!caps.is_empty()).then_some(caps),
                name,
                id,
                protect: Some(true),
                via: None,
                agent: None,
            };
            let r = client.connect(&req).await?;
            if again {
                eprintln!(
                    "{}: reconnected peer {} (CIPC_PEER is already a {} peer; same id, same key); pass --new for another peer",
                    super::prefix(),
                    r.peer.id,
                    r.peer.role
                );
            }
            if export {
                out.line(&format!(
                    "export CIPC_PEER={} CIPC_PEER_KEY={}",
                    r.peer.id, r.key
                ))?;
            } else if out.json {
                out.json(&r)?;
            } else {
                out.line(&format!(
                    "{} as {} (peer {}, protected); use it with:\n  export CIPC_PEER={} CIPC_PEER_KEY={}",
                    if again { "reconnected" } else { "connected" },
                    r.peer.role,
                    r.peer.id,
                    r.peer.id,
                    r.key
                ))?;
            }
        }
        PeersCmd::Show { id } => {
            let id = ctx.peer_arg(id.as_deref()).await?;
            let r = ctx.client.peer_info(&id).await?;
            if out.json {
                out.json(&r)?;
            } else {
                show_peer(&out, &r.peer)?;
            }
        }
        PeersCmd::Disconnect { id } => {
            let id = ctx.peer_arg(id.as_deref()).await?;
            let r = ctx.client.disconnect(&id).await?;
            if out.json {
                out.json(&r)?;
            } else {
                out.line(&format!(
                    "peer {} ({}) is offline; its unacked commands are pending again",
                    r.peer.id, r.peer.role
                ))?;
            }
        }
        PeersCmd::Forget { id } => {
            let id = ctx.peer_arg(Some(&id)).await?;
            let r = ctx.client.forget_peer(&id).await?;
            if out.json {
                out.json(&r)?;
            } else {
                out.line(&format!(
                    "forgot peer {} ({}); its unacked commands are pending again",
                    r.peer.id, r.peer.role
                ))?;
            }
        }
        PeersCmd::Prune {
            older_than,
            dry_run,
        } => {
            let now = crate::time::Timestamp::now();
            let min_age = older_than.unwrap_or_default();
            let ghosts: Vec<Peer> = ctx
                .client
                .peers()
                .await?
                .peers
                .into_iter()
                .filter(|p| p.status == PeerStatus::Offline && p.last_seen.age(now) >= min_age)
                .collect();
            let mut forgotten = Vec::new();
            for p in ghosts {
                if dry_run {
                    forgotten.push(p);
                    continue;
                }
                match ctx.client.forget_peer(&p.id.to_string()).await {
                    Ok(r) => forgotten.push(r.peer),
                    // Forgotten meanwhile (by the broker, or someone else).
                    Err(e) if e.reason() == Some(crate::error_code::ErrorCode::UnknownPeer) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if out.json {
                out.json(&serde_json::json!({"forgotten": forgotten, "dryRun": dry_run}))?;
            } else if forgotten.is_empty() {
                out.line("no offline peers to forget")?;
            } else {
                let verb = if dry_run { "would forget" } else { "forgot" };
                for p in &forgotten {
                    out.line(&format!(
                        "{verb} {} ({}{}), last seen {}",
                        p.id,
                        p.role,
                        p.name
                            .as_deref()
                            .map(|n| format!(", {n}"))
                            .unwrap_or_default(),
                        ago(p.last_seen)
                    ))?;
                }
                out.line(&format!("{verb} {} offline peer(s)", forgotten.len()))?;
            }
        }
        PeersCmd::Attention { text } => {
            let id = ctx.peer_or(None, "peers attention")?;
            let req = crate::api::AttentionRequest { attention: text };
            let r = ctx.client.set_attention(&id, &req).await?;
            if out.json {
                out.json(&r)?;
            } else {
                match &r.peer.attention {
                    Some(a) => out.line(&format!(
                        "peer {} ({}) needs a person: {a}",
                        r.peer.id, r.peer.role
                    ))?,
                    None => out.line(&format!(
                        "peer {} ({}) needs nobody now",
                        r.peer.id, r.peer.role
                    ))?,
                }
            }
        }
        PeersCmd::Heartbeat { id } => {
            let id = ctx.peer_arg(id.as_deref()).await?;
            let r = ctx.client.heartbeat(&id).await?;
            if out.json {
                out.json(&r)?;
            } else {
                out.line(&format!(
                    "peer {} ({}) is {}",
                    r.peer.id,
                    r.peer.role,
                    status_word(r.peer.status)
                ))?;
            }
        }
    }
    Ok(super::exit::OK)
}

/// This session's peer (CIPC_PEER with its key), when the broker still
/// knows it and it has `role`: the peer `peers connect ROLE` reconnects.
async fn same_role_peer(ctx: &Ctx, role: &str) -> Result<Option<Uuid>, CliError> {
    let (Some(me), Some(_)) = (ctx.client.peer(), ctx.client.key()) else {
        return Ok(None);
    };
    match ctx.client.peer_info(&me.to_string()).await {
        Ok(r) if r.peer.role == role => Ok(Some(me)),
        // Another role, forgotten, or a key that no longer proves it: a new peer.
        Ok(_) | Err(ClientError::Api { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The wire word of a peer status.
pub fn status_word(s: PeerStatus) -> &'static str {
    s.as_str()
}

fn via_word(v: Via) -> &'static str {
    match v {
        Via::Http => "http",
        Via::Mcp => "mcp",
        Via::Hook => "hook",
    }
}

/// How a peer is connected and, for a coding session, which agent it is
/// (`hook · claude-code`).
fn via_and_agent(p: &Peer) -> String {
    match p.agent.as_deref() {
        Some(agent) => format!("{} · {agent}", via_word(p.via)),
        None => via_word(p.via).to_string(),
    }
}

/// The peers table (also used by `cipc status`).
pub fn peer_table(out: &Output, peers: &[Peer]) -> comfy_table::Table {
    let mut t = out.new_table(&[
        "ID",
        "ROLE",
        "NAME",
        "STATUS",
        "VIA",
        "LAST SEEN",
        "CAPABILITIES",
        "ATTENTION",
    ]);
    for p in peers {
        t.add_row(vec![
            comfy_table::Cell::new(p.id),
            comfy_table::Cell::new(&p.role),
            comfy_table::Cell::new(p.name.as_deref().unwrap_or("")),
            out.status_cell(status_word(p.status)),
            comfy_table::Cell::new(via_and_agent(p)),
            comfy_table::Cell::new(ago(p.last_seen)),
            comfy_table::Cell::new(p.capabilities.join(",")),
            comfy_table::Cell::new(p.attention.as_deref().unwrap_or("")),
        ]);
    }
    t
}

fn show_peer(out: &Output, p: &Peer) -> Result<(), CliError> {
    let mut t = out.new_table(&["FIELD", "VALUE"]);
    t.add_row(vec!["id".to_string(), p.id.to_string()]);
    t.add_row(vec!["role".to_string(), p.role.clone()]);
    t.add_row(vec!["name".to_string(), p.name.clone().unwrap_or_default()]);
    t.add_row(vec![
        comfy_table::Cell::new("status"),
        out.status_cell(status_word(p.status)),
    ]);
    t.add_row(vec!["via".to_string(), via_word(p.via).to_string()]);
    if let Some(agent) = &p.agent {
        t.add_row(vec!["agent".to_string(), agent.clone()]);
    }
    t.add_row(vec!["capabilities".to_string(), p.capabilities.join(", ")]);
    t.add_row(vec![
        "connected".to_string(),
        format!("{} ({})", p.connected_at, ago(p.connected_at)),
    ]);
    t.add_row(vec![
        "last seen".to_string(),
        format!("{} ({})", p.last_seen, ago(p.last_seen)),
    ]);
    if let Some(a) = &p.attention {
        t.add_row(vec!["attention".to_string(), a.clone()]);
    }
    if !p.working_on.is_empty() {
        let ids: Vec<String> = p
            .working_on
            .iter()
            .map(std::string::ToString::to_string)
            .collect();
        t.add_row(vec!["working on".to_string(), ids.join(", ")]);
    }
    out.table(t)
}
