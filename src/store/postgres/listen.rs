//! Following the other nodes: `LISTEN cipc_log` on a connection of the
//! node's own, reconnecting by itself.

use super::{why, PgInner};
use futures::StreamExt;
use std::time::Duration;
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;

/// Follows `NOTIFY cipc_log` on a connection of its own, reconnecting with
/// backoff; after every (re)connect it announces a change so the node
/// catches up on whatever it missed meanwhile.
pub(super) async fn listen(inner: std::sync::Weak<PgInner>, closed: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(pg) = inner.upgrade() else { return };
        let (config, tls) = (pg.pg_config.clone(), pg.tls.clone());
        drop(pg);
        match config.connect(tls).await {
            Ok((client, mut connection)) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
                let driver = tokio::spawn(async move {
                    let mut messages =
                        futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(Ok(m)) = messages.next().await {
                        if let AsyncMessage::Notification(n) = m {
                            if tx.send(n.payload().parse().unwrap_or(0)).is_err() {
                                break;
                            }
                        }
                    }
                });
                if let Err(e) = client.batch_execute("LISTEN cipc_log").await {
                    tracing::warn!(error = %why(&e), "cannot LISTEN for other nodes' changes");
                } else {
                    backoff = Duration::from_millis(100);
                    if let Some(pg) = inner.upgrade() {
                        *pg.trouble.lock() = None;
                        let at = pg.changes.borrow().to_owned();
                        pg.changes.send_replace(at);
                    }
                    loop {
                        tokio::select! {
                            seq = rx.recv() => match (seq, inner.upgrade()) {
                                (Some(seq), Some(pg)) => {
                                    let at = pg.changes.borrow().to_owned().max(seq);
                                    pg.changes.send_replace(at);
                                }
                                _ => break,
                            },
                            () = closed.cancelled() => {
                                driver.abort();
                                return;
                            }
                        }
                    }
                    if let Some(pg) = inner.upgrade() {
                        *pg.trouble.lock() =
                            Some("lost the connection that follows other nodes' changes".into());
                    }
                    tracing::warn!("lost the LISTEN connection to PostgreSQL; reconnecting");
                }
                driver.abort();
            }
            Err(e) => {
                if let Some(pg) = inner.upgrade() {
                    *pg.trouble.lock() = Some(why(&e));
                }
                tracing::debug!(error = %why(&e), "cannot reach PostgreSQL yet");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = closed.cancelled() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
