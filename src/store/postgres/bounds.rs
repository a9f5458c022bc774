//! How a write turn is bounded in time, so a node frozen (or cut off) while
//! it holds the turn stalls the others for about `--turn-timeout`, not for
//! as long as it stays so: the bounds a turn's connection carries, and the
//! watcher that notices when a stalled turn moves again.

use super::PgInner;
use crate::store::Fault;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The shortest `--turn-timeout` honoured (shorter would end healthy turns).
const MIN_HOLD: Duration = Duration::from_millis(200);
/// The shortest lock wait a write turn is given, even when it already
/// spent its whole wait queued on this node (`lock_timeout` 0 means never).
const MIN_LOCK_WAIT: Duration = Duration::from_millis(10);
/// How often a stalled node looks whether the turn has come free.
const PROBE_EVERY: Duration = Duration::from_millis(250);

/// How a write turn is bounded in time, so that a node frozen (or cut off)
/// while it holds the turn cannot stop every other node's writes for as
/// long as it stays so.
///
/// The holder bounds itself on the server side: while its connection holds
/// [`TURN_LOCK`] it carries `idle_session_timeout` and
/// `idle_in_transaction_session_timeout`, so PostgreSQL ends the session of
/// a holder that says nothing for `hold` (which frees the lock), and a
/// holder that resumes finds its connection gone, its commit failed, and
/// reloads. The others bound their wait: `lock_timeout` on the lock, after
/// which the write is refused as stalled rather than left hanging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TurnBounds {
    /// A holder silent this long loses its session, and the turn with it.
    pub hold: Duration,
    /// A write waits this long at most for the turn (queued on this node
    /// included): half of `hold`, so a waiter says so before the database
    /// ends a frozen holder's turn, and a healthy turn (milliseconds) never
    /// comes near it.
    pub wait: Duration,
    /// Takes the lock with the bounds set: `$1` the lock, `$2` the wait in
    /// ms, `$3` the hold in ms (one statement, so a failed setting never
    /// leaves an unbounded lock wait behind it).
    pub lock_sql: &'static str,
    /// Gives the lock back and the session's own settings with it.
    pub unlock_sql: &'static str,
}

impl TurnBounds {
    /// The bounds for `--turn-timeout` `hold`; without `idle_session`
    /// (PostgreSQL before 14) only a holder silent inside a transaction is
    /// ended by the server.
    pub(super) fn new(hold: Duration, idle_session: bool) -> TurnBounds {
        let hold = hold.max(MIN_HOLD);
        let (lock_sql, unlock_sql) = if idle_session {
            (
                "SELECT set_config('lock_timeout', $2, false),
                        set_config('idle_in_transaction_session_timeout', $3, false),
                        set_config('idle_session_timeout', $3, false),
                        pg_advisory_lock($1)",
                "SELECT pg_advisory_unlock($1),
                        set_config('lock_timeout', NULL, false),
                        set_config('idle_in_transaction_session_timeout', NULL, false),
                        set_config('idle_session_timeout', NULL, false)",
            )
        } else {
            (
                "SELECT set_config('lock_timeout', $2, false),
                        set_config('idle_in_transaction_session_timeout', $3, false),
                        pg_advisory_lock($1)",
                "SELECT pg_advisory_unlock($1),
                        set_config('lock_timeout', NULL, false),
                        set_config('idle_in_transaction_session_timeout', NULL, false)",
            )
        };
        TurnBounds {
            hold,
            wait: hold / 2,
            lock_sql,
            unlock_sql,
        }
    }

    /// The `lock_timeout` for a write that must have the turn by
    /// `deadline`: what is left of its wait, never under [`MIN_LOCK_WAIT`].
    pub(super) fn lock_wait(left: Duration) -> Duration {
        left.max(MIN_LOCK_WAIT)
    }
}

/// Why a write turn could not be had.
pub(super) enum Refused {
    /// Another node holds the turn past the wait: see [`TurnBounds`].
    Stalled(String),
    /// The database failed or could not be reached.
    Down(String),
}

impl From<String> for Refused {
    fn from(why: String) -> Refused {
        Refused::Down(why)
    }
}

impl From<Fault> for Refused {
    fn from(fault: Fault) -> Refused {
        Refused::Down(fault.to_string())
    }
}

/// A duration as a PostgreSQL setting in milliseconds (`set_config` takes
/// text; a whole number of milliseconds is read as such).
pub(super) fn setting_ms(d: Duration) -> String {
    d.as_millis().clamp(1, i32::MAX as u128).to_string()
}

/// While another node stalls the write turn, looks every [`PROBE_EVERY`]
/// whether it moves again, and clears the note when it does (or when a
/// write turn of this node's did first). Ends at shutdown.
pub(super) async fn watch_stall(inner: std::sync::Weak<PgInner>) {
    loop {
        let Some(pg) = inner.upgrade() else { return };
        if pg.closed.is_cancelled() {
            return;
        }
        if pg.stalled.lock().is_none() {
            pg.probing.store(false, Ordering::Release);
            // A stall noted after the look above found no watcher running.
            if pg.stalled.lock().is_none() || pg.probing.swap(true, Ordering::AcqRel) {
                return;
            }
        }
        if pg.turn_moves().await {
            *pg.stalled.lock() = None;
            tracing::info!("the write turn moves again");
            continue;
        }
        let closed = pg.closed.clone();
        drop(pg);
        tokio::select! {
            () = tokio::time::sleep(PROBE_EVERY) => {}
            () = closed.cancelled() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turn_is_waited_for_half_as_long_as_its_holder_may_stay_silent() {
        let b = TurnBounds::new(Duration::from_secs(5), true);
        assert_eq!(b.hold, Duration::from_secs(5));
        assert_eq!(b.wait, Duration::from_millis(2500));
        for setting in [
            "lock_timeout",
            "idle_in_transaction_session_timeout",
            "idle_session_timeout",
        ] {
            assert!(
                b.lock_sql.contains(setting),
                "{setting} is set with the lock"
            );
            assert!(
                b.unlock_sql.contains(setting),
                "{setting} is reset with the unlock"
            );
        }
        // Set before the lock is asked for, in the same statement.
        assert!(b.lock_sql.find("set_config") < b.lock_sql.find("pg_advisory_lock"));
        assert!(
            b.unlock_sql.contains("NULL"),
            "reset to the session's own value"
        );
    }

    #[test]
    fn before_postgresql_14_only_a_silence_inside_a_transaction_is_bounded() {
        let b = TurnBounds::new(Duration::from_secs(5), false);
        assert!(!b.lock_sql.contains("idle_session_timeout"));
        assert!(!b.unlock_sql.contains("idle_session_timeout"));
        assert!(b.lock_sql.contains("idle_in_transaction_session_timeout"));
    }

    #[test]
    fn a_tiny_turn_timeout_is_raised_so_healthy_turns_are_not_cut() {
        let b = TurnBounds::new(Duration::ZERO, true);
        assert_eq!(b.hold, MIN_HOLD);
        assert_eq!(b.wait, MIN_HOLD / 2);
    }

    #[test]
    fn a_write_that_spent_its_wait_queued_never_waits_forever_on_the_lock() {
        // lock_timeout = 0 would mean no bound at all.
        assert_eq!(TurnBounds::lock_wait(Duration::ZERO), MIN_LOCK_WAIT);
        assert_eq!(
            TurnBounds::lock_wait(Duration::from_millis(1800)),
            Duration::from_millis(1800)
        );
        assert_eq!(setting_ms(Duration::ZERO), "1");
        assert_eq!(setting_ms(Duration::from_micros(10)), "1");
        assert_eq!(setting_ms(Duration::from_millis(2500)), "2500");
        assert_eq!(setting_ms(Duration::MAX), i32::MAX.to_string());
    }
}
