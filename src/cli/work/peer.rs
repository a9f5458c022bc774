//! The worker's peer: who it is (id and key), registering it, and the
//! retry-with-backoff every request to the broker goes through.

use crate::api::ConnectRequest;
use crate::cli::backoff::Backoff;
use crate::cli::CliError;
use crate::client::{Client, ClientError};
use crate::error_code::ErrorCode;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use uuid::Uuid;

/// This worker's peer: its id and the key that proves it.
#[derive(Clone)]
pub(super) struct Ident {
    /// The peer's id: the one the broker gives commands for this worker.
    pub(super) id: Uuid,
    /// The peer's key: the peer is protected, so every request on its
    /// behalf (and every handler's `cipc`) must show it.
    pub(super) key: String,
}

/// What every task of the worker shares.
pub(super) struct Shared {
    /// The client without any peer: [`Shared::client`] adds the key.
    pub(super) base: Client,
    /// The role served, for registering (again).
    role: String,
    /// The peer's human-friendly name, for registering (again).
    name: Option<String>,
    /// The current peer; it changes when a broker that forgot the peer
    /// gives it a new id. `None` only before the first registration.
    ident: Mutex<Option<Ident>>,
    /// The broker token, passed on to the handlers.
    pub(super) token: Option<String>,
    /// Whether "the broker is unavailable" was said and not taken back.
    away: AtomicBool,
}

impl Shared {
    /// The state of a worker not registered yet (see [`Shared::set`]).
    pub(super) fn new(
        base: Client,
        role: String,
        name: Option<String>,
        token: Option<String>,
    ) -> Shared {
        Shared {
            base,
            role,
            name,
            ident: Mutex::new(None),
            token,
            away: AtomicBool::new(false),
        }
    }

    /// The current peer (a nil id and empty key before the first
    /// registration, which nothing asks for).
    pub(super) fn ident(&self) -> Ident {
        self.ident
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .unwrap_or_else(|| Ident {
                id: Uuid::nil(),
                key: String::new(),
            })
    }

    /// Makes `ident` the current peer, after registering (again).
    pub(super) fn set(&self, ident: Ident) {
        *self
            .ident
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(ident);
    }

    /// A client speaking as this worker's peer (the key names it), and the peer.
    pub(super) fn client(&self) -> (Client, Ident) {
        let ident = self.ident();
        let client = self.base.clone().with_key(Some(ident.key.clone()));
        (client, ident)
    }

    /// Says once, not per retry, that the broker is away.
    pub(super) fn unavailable(&self, e: &ClientError) {
        if !self.away.swap(true, Ordering::Relaxed) {
            eprintln!("cipc work: broker unavailable ({e}); retrying with backoff");
        }
    }

    /// Takes back [`Shared::unavailable`] once the broker answers.
    pub(super) fn answered(&self) {
        if self.away.swap(false, Ordering::Relaxed) {
            eprintln!("cipc work: the broker answers again");
        }
    }

    /// Repeats `f` while the broker is unreachable or busy, with backoff.
    /// Also answers whether it had to repeat (an earlier try may have landed).
    pub(super) async fn retry<T, F, Fut>(&self, mut f: F) -> (Result<T, ClientError>, bool)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let mut backoff = Backoff::new();
        let mut repeated = false;
        loop {
            match f().await {
                Err(e) if e.is_retryable() => {
                    self.unavailable(&e);
                    backoff.wait(None).await;
                    repeated = true;
                }
                other => {
                    self.answered();
                    return (other, repeated);
                }
            }
        }
    }
}

/// The peer `CIPC_PEER` / `CIPC_PEER_KEY` name, when it has this role.
/// Commands it still holds from before (a worker that was killed) are given
/// back to the queue first, so this worker takes them again.
pub(super) async fn reusable_identity(
    client: &Client,
    role: &str,
    shared: &Shared,
) -> Result<Option<Ident>, CliError> {
    let (Some(id), Some(key)) = (client.peer(), client.key()) else {
        return Ok(None);
    };
    let id_text = id.to_string();
    let peer = match shared.retry(|| client.peer_info(&id_text)).await.0 {
        Ok(r) if r.peer.role == role => r.peer,
        Ok(_) => return Ok(None),
        Err(e) if e.reason() == Some(ErrorCode::UnknownPeer) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if !peer.working_on.is_empty() {
        eprintln!(
            "cipc work: peer {id} still holds {} command(s) from before; giving them back to the queue",
            peer.working_on.len()
        );
        shared.retry(|| client.disconnect(&id_text)).await.0?;
    }
    Ok(Some(Ident {
        id,
        key: key.to_string(),
    }))
}

/// Registers the protected peer: as `reuse` (same id and key) when given,
/// else as a new peer. A reconnect the broker refuses (`key_required` or
/// `wrong_key`: the key no longer fits) falls back to a new peer.
pub(super) async fn register(shared: &Shared, reuse: Option<Ident>) -> Result<Ident, CliError> {
    let connect = |reuse: Option<Ident>| {
        let client = match &reuse {
            Some(i) => shared.base.clone().with_key(Some(i.key.clone())),
            None => shared.base.clone(),
        };
        let req = ConnectRequest {
            role: shared.role.clone(),
            capabilities: None,
            name: shared.name.clone(),
            id: reuse.map(|i| i.id),
            protect: Some(true),
            via: None,
            agent: None,
        };
        async move { client.connect(&req).await }
    };
    let answer = match shared.retry(|| connect(reuse.clone())).await.0 {
        Err(e)
            if reuse.is_some()
                && matches!(
                    e.reason(),
                    Some(ErrorCode::KeyRequired | ErrorCode::WrongKey)
                ) =>
        {
            eprintln!("cipc work: the broker refused this peer's key; registering a new peer");
            shared.retry(|| connect(None)).await.0
        }
        other => other,
    }?;
    Ok(Ident {
        id: answer.peer.id,
        key: answer.key,
    })
}
