//! Taking commands and acking them: the `wait` long-poll, the ack that
//! carries the next take (`?next=`), the plain ack, and what to make of an
//! ack the broker refuses. Each reports to the loop with an [`Event`].

use super::peer::{register, Shared};
use super::worker::{Event, Tx};
use crate::api::AckRequest;
use crate::cli::backoff::Backoff;
use crate::client::ClientError;
use crate::error_code::ErrorCode;
use std::sync::Arc;
use uuid::Uuid;

/// How long one take (`wait`, or the `next` of an ack) may park on the broker.
const POLL_MS: u64 = 60_000;

/// Takes the next command, after settling `ack` with `next` when given.
/// Retries an unreachable broker, and registers the peer again when the
/// broker refuses it ([`ClientError::refuses_peer`]).
pub(super) async fn take(
    shared: Arc<Shared>,
    tx: Tx,
    generation: u64,
    ack: Option<(Uuid, AckRequest)>,
) {
    if let Some((id, req)) = ack {
        let id_text = id.to_string();
        let (answer, repeated) = shared
            .retry(|| {
                let (client, _) = shared.client();
                let (id_text, req) = (id_text.clone(), req.clone());
                async move { client.ack_and_next(&id_text, &req, POLL_MS).await }
            })
            .await;
        match answer {
            Ok(r) => {
                let _ = tx.send(Event::Acked { id, error: None });
                if let Some(command) = r.next {
                    let _ = tx.send(Event::Took {
                        generation,
                        command: Box::new(command),
                    });
                    return;
                }
            }
            Err(e) => {
                let error = settle_failed_ack(&shared, id, &req, e, repeated).await;
                let _ = tx.send(Event::Acked { id, error });
            }
        }
    }
    let mut backoff = Backoff::new();
    let mut registered_again = false;
    loop {
        let (client, ident) = shared.client();
        match client.wait_command(&ident.id.to_string(), POLL_MS).await {
            Ok(r) => {
                shared.answered();
                backoff.reset();
                registered_again = false;
                if let Some(command) = r.command {
                    let _ = tx.send(Event::Took {
                        generation,
                        command: Box::new(command),
                    });
                    return;
                }
            }
            Err(e) if e.is_retryable() => {
                shared.unavailable(&e);
                backoff.wait(None).await;
            }
            Err(e) if e.refuses_peer() && !registered_again => {
                shared.answered();
                match register(&shared, Some(ident.clone())).await {
                    Ok(new) => {
                        if new.id == ident.id {
                            eprintln!(
                                "cipc work: the broker had forgotten peer {}; registered it again",
                                new.id
                            );
                        } else {
                            eprintln!(
                                "cipc work: the broker had forgotten peer {}; now peer {}",
                                ident.id, new.id
                            );
                        }
                        shared.set(new);
                        registered_again = true;
                    }
                    Err(error) => {
                        let _ = tx.send(Event::TakeFailed { generation, error });
                        return;
                    }
                }
            }
            Err(e) => {
                let _ = tx.send(Event::TakeFailed {
                    generation,
                    error: e.into(),
                });
                return;
            }
        }
    }
}

/// A plain ack, retried while the broker is away; answers why it did not
/// land, if it did not. `maybe_landed`: an earlier try may have landed.
pub(super) async fn plain_ack(
    shared: &Shared,
    id: Uuid,
    req: &AckRequest,
    maybe_landed: bool,
) -> Option<String> {
    let id_text = id.to_string();
    let (answer, repeated) = shared
        .retry(|| {
            let (client, _) = shared.client();
            let id_text = id_text.clone();
            async move { client.ack(&id_text, req).await }
        })
        .await;
    match answer {
        Ok(_) => None,
        Err(e) => settle_failed_ack(shared, id, req, e, repeated || maybe_landed).await,
    }
}

/// What to make of an ack the broker refused.
async fn settle_failed_ack(
    shared: &Shared,
    id: Uuid,
    req: &AckRequest,
    e: ClientError,
    maybe_landed: bool,
) -> Option<String> {
    match e {
        // An earlier try landed and only its answer was lost.
        // (Or it did not, and the command moved on: nothing to add then.)
        e if maybe_landed
            && matches!(
                e.reason(),
                Some(
                    ErrorCode::AlreadyFinished
                        | ErrorCode::NotHolder
                        | ErrorCode::DeliveryOver
                        | ErrorCode::NotDelivered
                )
            ) =>
        {
            None
        }
        e if req.result.is_some() && e.reason() == Some(ErrorCode::PayloadTooLarge) => {
            let smaller = AckRequest {
                result: None,
                error: Some(
                    "the handler's output is larger than the broker accepts; write large output to a file and print its path"
                        .into(),
                ),
                attempt: req.attempt,
            };
            let id_text = id.to_string();
            let (answer, _) = shared
                .retry(|| {
                    let (client, _) = shared.client();
                    let (id_text, smaller) = (id_text.clone(), smaller.clone());
                    async move { client.ack(&id_text, &smaller).await }
                })
                .await;
            Some(match answer {
                Ok(_) => "the result was too large for the broker; failed the command instead"
                    .to_string(),
                Err(e) => e.to_string(),
            })
        }
        e => Some(e.to_string()),
    }
}
