//! Which peer, command, question or lease the user means: whole ids, or a unique
//! part of one (as tables show them) looked up in the broker's lists, and
//! the peer a client speaks for (`--peer` / `CIPC_PEER`, or the one its key
//! names).

use super::{CliError, ClientArgs, Ctx};
use crate::client::Client;
use uuid::Uuid;

/// The peer a client acts as and the key proving it, from `--peer` /
/// `CIPC_PEER` and `--peer-key` / `CIPC_PEER_KEY`: the peer named (a unique
/// part of an id is looked up with `lookup`, a client speaking for nobody),
/// else the one its key names. A malformed id or key, or an id and a key
/// naming different peers, is a usage error saying how to fix it; `cipc
/// doctor` shows the same error as one of its check lines.
pub async fn identity(
    args: &ClientArgs,
    lookup: &Client,
) -> Result<(Option<Uuid>, Option<String>), CliError> {
    let key = args
        .peer_key
        .as_deref()
        .map(str::trim)
        .filter(|k| !k.is_empty());
    let key_peer = match key {
        None => None,
        Some(k) => Some(crate::broker::keys::key_peer(k).ok_or_else(|| {
            CliError::usage(
                "--peer-key / CIPC_PEER_KEY is not a cipc peer key (pk_...); use the key printed by `cipc peers connect ROLE --export`",
            )
        })?),
    };
    let peer = match args.peer.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(p) => Some(match Uuid::parse_str(p) {
            Ok(id) => id,
            // Part of an id, as tables show them: the broker's list says whose.
            Err(_) if IdKind::Peer.fragment(p).is_ok() => {
                let id = resolve_with(lookup, p, IdKind::Peer)
                    .await
                    .map_err(|e| e.prefixed("--peer / CIPC_PEER: "))?;
                Uuid::parse_str(&id).map_err(|_| CliError::error("the broker listed a peer id that is not a UUID"))?
            }
            Err(_) => {
                return Err(CliError::usage(format!(
                    "--peer / CIPC_PEER {p:?} is not a peer id; use the id printed by `cipc peers connect ROLE` (or a unique part of it, at least 6 characters)"
                )))
            }
        }),
    };
    if let (Some(p), Some(k)) = (peer, key_peer) {
        if p != k {
            return Err(CliError::usage(format!(
                "CIPC_PEER ({p}) and CIPC_PEER_KEY (peer {k}) name different peers; export both from one `cipc peers connect ROLE --export`"
            )));
        }
    }
    Ok((peer.or(key_peer), key.map(str::to_string)))
}

/// The kinds of id a user types: a command's, a peer's, a question's, a lease's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// A command id (`cipc send`, `cipc commands`).
    Command,
    /// A peer id (`cipc peers`).
    Peer,
    /// A question id (`cipc ask`, `cipc questions`).
    Question,
    /// A held lease's id (`cipc lease list`).
    Lease,
}

/// The fewest characters of an id that name it (besides the whole id).
pub const MIN_ID_PART: usize = 6;

impl IdKind {
    fn noun(self) -> &'static str {
        match self {
            IdKind::Command => "command",
            IdKind::Peer => "peer",
            IdKind::Question => "question",
            IdKind::Lease => "lease",
        }
    }

    fn lister(self) -> &'static str {
        match self {
            IdKind::Command => "`cipc commands`",
            IdKind::Peer => "`cipc peers`",
            IdKind::Question => "`cipc questions`",
            IdKind::Lease => "`cipc lease list --all`",
        }
    }

    /// The hex digits of a part of an id (dashes dropped, lower case), or
    /// the usage error saying what an id looks like.
    pub fn fragment(self, given: &str) -> Result<String, CliError> {
        let part = given.trim().to_ascii_lowercase().replace('-', "");
        if part.len() >= MIN_ID_PART
            && part.len() <= 32
            && part.chars().all(|c| c.is_ascii_hexdigit())
        {
            return Ok(part);
        }
        let why = if !part.is_empty()
            && part.chars().all(|c| c.is_ascii_hexdigit())
            && part.len() < MIN_ID_PART
        {
            "is too short"
        } else {
            "is not"
        };
        Err(CliError::usage(format!(
            "{given:?} {why} a {noun} id: give the whole id, or at least {MIN_ID_PART} characters from its start or end (the short id that {lister} shows works)",
            noun = self.noun(),
            lister = self.lister(),
        )))
    }
}

/// Picks the one id of `candidates` (each with a few words about it) that
/// `given` names: the whole id, or a part of at least [`MIN_ID_PART`]
/// characters from its start or its end (UUID v7 ids begin with their
/// time, so tables show their ends). None, or several, is an error saying
/// which.
pub fn pick_id(
    given: &str,
    kind: IdKind,
    candidates: impl IntoIterator<Item = (Uuid, String)>,
) -> Result<Uuid, CliError> {
    let part = kind.fragment(given)?;
    let found: Vec<(Uuid, String)> = candidates
        .into_iter()
        .filter(|(id, _)| {
            let hex = id.simple().to_string();
            hex.starts_with(&part) || hex.ends_with(&part)
        })
        .collect();
    match found.as_slice() {
        [(id, _)] => Ok(*id),
        [] => Err(CliError::error(format!(
            "no {noun} id starts or ends with {given}; list them with {lister}",
            noun = kind.noun(),
            lister = kind.lister(),
            given = given.trim()
        ))),
        many => {
            const SHOWN: usize = 5;
            let mut list: Vec<String> = many
                .iter()
                .take(SHOWN)
                .map(|(id, what)| format!("{id} ({what})"))
                .collect();
            if many.len() > SHOWN {
                list.push(format!("and {} more", many.len() - SHOWN));
            }
            Err(CliError::usage(format!(
                "{given} matches {n} {noun}s: {list}; give more of the id",
                given = given.trim(),
                n = many.len(),
                noun = kind.noun(),
                list = list.join(", ")
            )))
        }
    }
}

/// An id as the broker wants it: a whole id as given (no request), or the
/// one id that a part names, looked up in the broker's list of that kind
/// (`GET /commands?limit=10000`, `GET /peers`, `GET /questions`, `GET /leases`).
pub async fn resolve_id(ctx: &Ctx, given: &str, kind: IdKind) -> Result<String, CliError> {
    resolve_with(&ctx.client, given, kind).await
}

async fn resolve_with(client: &Client, given: &str, kind: IdKind) -> Result<String, CliError> {
    let given = given.trim();
    if let Ok(id) = Uuid::parse_str(given) {
        return Ok(id.to_string());
    }
    kind.fragment(given)?;
    let candidates: Vec<(Uuid, String)> = match kind {
        IdKind::Command => client
            .list_commands(None, None, Some(crate::api::MAX_LIST_LIMIT))
            .await?
            .commands
            .into_iter()
            .map(|c| {
                let what = format!("{} for {}, {}", c.action, c.target, c.status.as_str());
                (c.id, what)
            })
            .collect(),
        IdKind::Peer => client
            .peers()
            .await?
            .peers
            .into_iter()
            .map(|p| {
                let what = format!("{}, {}", p.role, p.status.as_str());
                (p.id, what)
            })
            .collect(),
        IdKind::Question => client
            .questions(None)
            .await?
            .questions
            .into_iter()
            .map(|q| {
                let what = format!("from {}, {}", q.from, q.status.as_str());
                (q.id, what)
            })
            .collect(),
        IdKind::Lease => client
            .leases(None, None)
            .await?
            .leases
            .into_iter()
            .map(|l| {
                let what = format!("{} held by {}", l.paths.join(", "), l.holder_role);
                (l.id, what)
            })
            .collect(),
    };
    pick_id(given, kind, candidates).map(|id| id.to_string())
}
