//! Who is calling, and whether they may act as the peer they name.
//!
//! Every door builds a [`Caller`] from what the request presents (REST
//! headers, an MCP session's binding or a tool's `peer_key`) and the broker
//! decides here, in one place, whether that is enough: a peer registered with
//! `protect` accepts nothing in its name without its key, and a wrong key
//! never works, protected peer or not.

use super::keys::{key_peer, KeyHash};
use super::{Broker, BrokerError, State};
use crate::error_code::ErrorCode;
use uuid::Uuid;

/// The `address` of a call through the MCP door: coding sessions, never
/// a person at the dashboard or a shell.
pub const MCP_DOOR: &str = "mcp";

/// Who is asking, for `from` defaults, audit, ownership and peer keys.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The peer the caller says it is (`X-Cipc-Peer`, the peer its key
    /// names, or the peer bound to its MCP session).
    pub peer: Option<Uuid>,
    /// The key offered as proof (`X-Cipc-Peer-Key`, an MCP tool's
    /// `peer_key`, or the one an MCP session got from `connect`).
    pub key: Option<String>,
    /// The network address or door ("dashboard", "mcp") it came through.
    pub address: Option<String>,
}

impl Caller {
    /// A caller from what it presented: a key alone names its peer.
    pub fn presented(peer: Option<Uuid>, key: Option<String>, address: Option<String>) -> Caller {
        let key = key.map(|k| k.trim().to_string()).filter(|k| !k.is_empty());
        let peer = peer.or_else(|| key.as_deref().and_then(key_peer));
        Caller { peer, key, address }
    }

    /// A person (the dashboard, `cipc` in a shell that names no peer): the
    /// request names no peer and did not come through the MCP door.
    pub fn is_person(&self) -> bool {
        self.peer.is_none() && self.address.as_deref() != Some(MCP_DOOR)
    }

    /// What a command or question this caller makes records as its
    /// `origin` ([`crate::api::Origin`]).
    pub fn origin(&self) -> Option<String> {
        crate::api::Origin::of(self.peer, self.address.as_deref()).map(|o| o.to_string())
    }
}

impl Broker {
    /// Checks a request's claims before anything else runs: a key must be
    /// right for the peer it names, and naming a protected peer needs its key.
    /// A peer the broker does not know is left to the routes (404 where it
    /// matters). On success the named peer's contact is refreshed.
    pub fn admit(&self, caller: &Caller) -> Result<(), BrokerError> {
        let Some(peer) = caller.peer else {
            if caller.key.is_some() {
                return Err(malformed_key());
            }
            return Ok(());
        };
        if let Some(k) = &caller.key {
            match key_peer(k) {
                None => return Err(malformed_key()),
                Some(p) if p != peer => {
                    return Err(BrokerError::new(ErrorCode::WrongKey, format!(
                        "X-Cipc-Peer names peer {peer} but the peer key is peer {p}'s; send one peer's id and key, or only the key"
                    )))
                }
                Some(_) => {}
            }
        }
        {
            let st = self.lock();
            if !st.peers.contains_key(&peer) {
                return Ok(());
            }
            self.prove_in(&st, peer, caller)?;
        }
        self.touch(peer);
        Ok(())
    }

    /// May `caller` act as `peer`? Unknown peers pass (the caller of this
    /// answers 404 for them where it matters).
    pub(super) fn prove_in(
        &self,
        st: &State,
        peer: Uuid,
        caller: &Caller,
    ) -> Result<(), BrokerError> {
        let Some(e) = st.peers.get(&peer) else {
            return Ok(());
        };
        match &caller.key {
            Some(k) => {
                let right = key_peer(k) == Some(peer) && e.key.as_ref().is_some_and(|h| h.matches(k));
                if right {
                    Ok(())
                } else {
                    Err(BrokerError::new(ErrorCode::WrongKey, format!(
                        "the peer key is not peer {peer}'s; use the key that connect answered for this peer, or connect again"
                    )))
                }
            }
            None if e.peer.protected => Err(BrokerError::new(ErrorCode::KeyRequired, format!(
                "peer {peer} is protected: send its key as X-Cipc-Peer-Key (the key its connect answered; the cipc CLI reads CIPC_PEER_KEY, MCP tools take peer_key)"
            ))),
            None => Ok(()),
        }
    }

    /// True when `caller` proves `peer` with its key (not merely unprotected).
    pub(super) fn holds_key(&self, st: &State, peer: Uuid, caller: &Caller) -> bool {
        caller.key.as_deref().is_some_and(|k| {
            key_peer(k) == Some(peer)
                && st
                    .peers
                    .get(&peer)
                    .and_then(|e| e.key.as_ref())
                    .is_some_and(|h: &KeyHash| h.matches(k))
        })
    }
}

fn malformed_key() -> BrokerError {
    BrokerError::new(ErrorCode::WrongKey,
        "the peer key is not a cipc peer key (pk_...); use the key that POST /peers/connect answered",
    )
}
