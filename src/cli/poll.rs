//! Waits of any length over the API's bounded long-polls.
//!
//! One long-poll may last at most an hour (`MAX_LONG_POLL_MS`), and the broker may
//! restart in the middle of a wait. [`long_poll`] repeats the request until
//! the client's own deadline, and when the broker cannot be reached it retries
//! with backoff instead of giving up, so `cipc signal wait ready --forever`
//! outlives a `cipc serve` restart.

use super::backoff::Backoff;
use super::output::Spinner;
use super::CliError;
use crate::api::MAX_LONG_POLL_MS;
use crate::client::ClientError;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// How a wait ended.
#[derive(Debug)]
pub enum Waited<T> {
    /// What was waited for happened.
    Done(T),
    /// The deadline passed first; the last answer (with `timedOut`).
    TimedOut(T),
}

/// Milliseconds to ask the broker for, given what is left of the wait (at
/// most one long-poll, [`MAX_LONG_POLL_MS`]).
pub fn poll_ms(deadline: Option<Instant>) -> u64 {
    match deadline {
        None => MAX_LONG_POLL_MS,
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now()).as_millis();
            left.min(MAX_LONG_POLL_MS as u128) as u64
        }
    }
}

fn passed(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

/// Repeats `attempt(timeout_ms)` until it reports done (`(answer, false)`) or
/// the deadline passes (`None` waits forever). Unreachable or busy brokers
/// are retried with backoff until the deadline; other errors end the wait.
/// `what` names the wait in the spinner while retrying.
pub async fn long_poll<T, F, Fut>(
    deadline: Option<Instant>,
    spinner: &Spinner,
    what: &str,
    mut attempt: F,
) -> Result<Waited<T>, CliError>
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = Result<(T, bool), ClientError>>,
{
    let mut backoff = Backoff::new();
    let mut last: Option<T> = None;
    let mut told = false;
    loop {
        match attempt(poll_ms(deadline)).await {
            Ok((answer, false)) => return Ok(Waited::Done(answer)),
            Ok((answer, true)) => {
                backoff.reset();
                if told {
                    spinner.set_message(what.to_string());
                    told = false;
                }
                if passed(deadline) {
                    return Ok(Waited::TimedOut(answer));
                }
                last = Some(answer);
            }
            Err(e) if e.is_retryable() => {
                if passed(deadline) {
                    return match last {
                        // The wait itself ran out while the broker was away.
                        Some(answer) if !matches!(e, ClientError::Unreachable { .. }) => {
                            Ok(Waited::TimedOut(answer))
                        }
                        _ => Err(e.into()),
                    };
                }
                if !told {
                    spinner.note(format!(
                        "{what}: broker unavailable ({e}); retrying until the wait's deadline"
                    ));
                    told = true;
                }
                backoff.wait(deadline).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The deadline of a wait: `None` for `--forever`.
pub fn deadline(timeout: Duration, forever: bool) -> Option<Instant> {
    if forever {
        None
    } else {
        Some(Instant::now() + timeout)
    }
}
