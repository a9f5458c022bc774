//! Tools about peers and the broker as a whole: connect, register, whoami,
//! list_peers, status, reset.

use super::super::args::*;
use super::super::render::{self, Answer, Refusal};
use super::{parse_id, CipcMcp};
use crate::api::{ConnectRequest, PeerStatus, Via};
use crate::error_code::{ErrorClass, ErrorCode};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::{tool, tool_router};

impl CipcMcp {
    /// `connect` with a role, and `register`: registers (or re-registers)
    /// the caller's peer and binds it to this session.
    async fn do_register(
        &self,
        role: String,
        capabilities: Option<Vec<String>>,
        name: Option<String>,
        id: Option<String>,
        peer_key: Option<String>,
    ) -> Answer {
        let caller = self.caller(peer_key.as_deref())?;
        let id = match id.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            Some(raw) => Some(parse_id(ErrorCode::UnknownPeer, "peer", raw)?),
            // Registering again (a new role) keeps the caller's peer.
            None => caller.peer,
        };
        let req = ConnectRequest {
            role: role.trim().to_string(),
            capabilities,
            name,
            id,
            protect: Some(true),
            via: None,
            agent: None,
        };
        let broker = self.session.broker();
        let (peer, key) =
            broker
                .connect(req, Via::Mcp, &caller)
                .await
                .map_err(|e| match e.code.class() {
                    ErrorClass::Forbidden => render::protected_peer(e),
                    _ => Refusal::from(e),
                })?;
        self.session.bind(peer.id, key.clone()).await;
        let waiting = broker.commands_for_peer(peer.id).map_or(0, |c| c.len());
        Ok(render::registered(&peer, &key, waiting, broker.discover()))
    }
}

#[tool_router(router = peer_tools, vis = "pub(super)")]
impl CipcMcp {
    #[tool(
        description = "Start here. Shows who is online on the broker and registers you under a role. Without role: answers the online peers and roles and asks you to pick a role (ask the user which role this session should have). With role (e.g. \"backend\"): registers you as a peer of that role, so you receive commands sent to the role, and answers your peerKey: pass it as peer_key in every later cipc tool call. Pass peer_key (or id plus peer_key) to continue as the same peer.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true
        )
    )]
    async fn connect(&self, Parameters(args): Parameters<ConnectArgs>) -> Answer {
        let role = args
            .role
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty());
        let Some(role) = role else {
            let online = self.session.broker().discover();
            let me = self.caller(args.peer_key.as_deref())?.peer;
            return Ok(render::online(online, me));
        };
        self.do_register(
            role.to_string(),
            args.capabilities,
            args.name,
            args.id,
            args.peer_key,
        )
        .await
    }

    #[tool(
        description = "Register as a peer with a specific role and capabilities (like connect with a role); answers your peerKey for peer_key. Registering again with your peer_key changes your role; your unacked commands go back to the old role's queue.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true
        )
    )]
    async fn register(&self, Parameters(args): Parameters<RegisterArgs>) -> Answer {
        self.do_register(
            args.role,
            args.capabilities,
            args.name,
            args.id,
            args.peer_key,
        )
        .await
    }

    #[tool(
        description = "Who you are on the broker (pass your peer_key): your peer id, role, status and the commands you are working on, or that you are not registered yet.",
        annotations(read_only_hint = true)
    )]
    async fn whoami(&self, Parameters(args): Parameters<IdentityArgs>) -> Answer {
        let caller = self.caller(args.peer_key.as_deref())?;
        let Some(id) = caller.peer else {
            return Ok(render::anonymous());
        };
        Ok(match self.session.broker().peer(id) {
            Ok(peer) => render::whoami(&peer),
            Err(_) => {
                if self.session.peer() == Some(id) {
                    self.session.unbind();
                }
                render::forgotten(id)
            }
        })
    }

    #[tool(
        description = "List the peers on the broker: by default the online ones with their roles and capabilities; all: true also lists stale and offline peers.",
        annotations(read_only_hint = true)
    )]
    async fn list_peers(&self, Parameters(args): Parameters<ListPeersArgs>) -> Answer {
        self.caller(args.peer_key.as_deref())?;
        if args.all.unwrap_or(false) {
            let peers = self.session.broker().peers();
            let online = peers
                .iter()
                .filter(|p| p.status == PeerStatus::Online)
                .count();
            return Ok(render::all_peers(peers, online));
        }
        Ok(render::online_peers(self.session.broker().discover()))
    }

    #[tool(
        description = "Everything on the broker at a glance: version, uptime, peers, command counts and recent commands, channels and signals.",
        annotations(read_only_hint = true)
    )]
    async fn status(&self, Parameters(args): Parameters<IdentityArgs>) -> Answer {
        self.caller(args.peer_key.as_deref())?;
        let s = self.session.broker().status();
        let online = s
            .peers
            .iter()
            .filter(|p| p.status == PeerStatus::Online)
            .count();
        Ok(render::status(s, online))
    }

    #[tool(
        description = "Erase everything on the broker for everyone: all peers, commands, channels and signals. Only when the user asks for it; needs confirm: true.",
        annotations(read_only_hint = false, destructive_hint = true)
    )]
    async fn reset(&self, Parameters(args): Parameters<ResetArgs>) -> Answer {
        self.caller(args.peer_key.as_deref())?;
        if !args.confirm {
            return Err(render::reset_unconfirmed());
        }
        self.session.broker().reset().await?;
        self.session.unbind();
        Ok(render::reset_done())
    }
}
