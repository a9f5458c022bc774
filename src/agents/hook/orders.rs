//! What the hooks tell the model about work: orders for its peer (taken
//! when shown, each once) and answers to the commands it sent.

use crate::agents::state::SessionState;
use crate::api::{Command, CommandStatus};
use crate::client::{Client, ClientError};
use std::fmt::Write as _;
use uuid::Uuid;

/// At most this many orders are taken at once.
const MAX_ORDERS: usize = 20;

/// Takes every order waiting for `peer` (at most [`MAX_ORDERS`]).
pub(super) async fn take_orders(client: &Client, peer: Uuid) -> Result<Vec<Command>, ClientError> {
    let mut taken = Vec::new();
    while taken.len() < MAX_ORDERS {
        match client.wait_command(&peer.to_string(), 0).await?.command {
            Some(c) => taken.push(c),
            None => break,
        }
    }
    Ok(taken)
}

/// Answers to the commands `peer` sent that finished since the last report.
/// The first look only notes where history ends.
pub(super) async fn answers(
    client: &Client,
    peer: Uuid,
    st: &mut SessionState,
) -> Result<Vec<String>, ClientError> {
    // The broker records a peer's commands with the peer as their origin;
    // only those are asked for, so the hook's cost does not grow with the broker.
    let mine = crate::api::CommandFilter {
        origin: Some(crate::api::Origin::Peer(peer).to_string()),
        ..Default::default()
    };
    let listed = client.list_commands_where(&mine, Some(100)).await?.commands;
    let finished: Vec<&Command> = listed.iter().filter(|c| c.status.is_terminal()).collect();
    let newest = finished
        .iter()
        .filter_map(|c| c.acked_at.map(crate::time::Timestamp::millis))
        .max();
    let Some(through) = st.answers_through else {
        st.answers_through = Some(newest.unwrap_or(0));
        return Ok(Vec::new());
    };
    let mut fresh: Vec<&&Command> = finished
        .iter()
        .filter(|c| c.acked_at.is_some_and(|t| t.millis() > through))
        .collect();
    fresh.sort_by_key(|c| c.acked_at.map(crate::time::Timestamp::millis));
    if let Some(n) = newest {
        st.answers_through = Some(n.max(through));
    }
    Ok(fresh.into_iter().map(|c| describe_answer(c)).collect())
}

pub(super) fn describe_order(c: &Command) -> String {
    let mut s = format!("[cipc] New order {} from {}: {}", c.id, c.from, c.action);
    let empty = c.params.is_null() || c.params.as_object().is_some_and(serde_json::Map::is_empty);
    if !empty {
        let _ = write!(s, "\nparams: {}", c.params);
    }
    let _ = write!(
        s,
        "\nDo it, then report back: the MCP tool ack_command with command_id \"{id}\" and a result (or an error), \
         or in Bash `cipc ack {id} --result '<json>'` (or `--error '<why>'`).",
        id = c.id
    );
    s
}

pub(super) fn describe_answer(c: &Command) -> String {
    let mut s = format!(
        "[cipc] Your command {} ({} for {}) is {}",
        c.id,
        c.action,
        c.target,
        c.status.as_str()
    );
    match (c.status, &c.result, &c.error) {
        (CommandStatus::Acked, Some(r), _) => {
            let _ = write!(s, ": result {r}");
        }
        (_, _, Some(e)) => {
            let _ = write!(s, ": {e}");
        }
        _ => {}
    }
    s
}
