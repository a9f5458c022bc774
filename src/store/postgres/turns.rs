//! Write turns on PostgreSQL: the advisory lock that makes them one node's
//! at a time, the catch-up read that comes with it, the members that join
//! an open turn, and the pipelined flush that commits what they changed as
//! one log row (group commit).

use super::bounds::{setting_ms, watch_stall, Refused, TurnBounds};
use super::rows::{json, plan, seq_param};
use super::schema::read_snapshot;
use super::{why, PgInner};
use crate::store::shared::{TurnHold, TurnKind};
use crate::store::{CatchUp, Fault, LogEntry, Mutation, SharedEvent, StoreError, Turn};
use deadpool_postgres::Object;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OwnedMutexGuard;

/// The advisory lock that makes a write turn one node's at a time.
pub(super) const TURN_LOCK: i64 = 0x6369_7063_0000_0001;
/// How long log rows are kept for nodes that are catching up.
const LOG_KEPT_SECS: f64 = 600.0;
/// Every this many log rows, the writer prunes old ones.
const PRUNE_EVERY: u64 = 256;
/// How long a write turn takes in more of this node's changes.
const JOIN_FOR: Duration = Duration::from_millis(20);
/// A write turn: its connection (holding [`TURN_LOCK`]), what its members
/// changed and not committed yet, and who is in it.
///
/// Changes made on this node while a turn is open join it instead of
/// waiting for a turn of their own (for at most [`JOIN_FOR`]): their
/// commits go out together, one log row per flush (group commit).
pub(super) struct OpenTurn {
    conn: tokio::sync::Mutex<Option<Object>>,
    pending: parking_lot::Mutex<Pending>,
    members: parking_lot::Mutex<Members>,
}

struct Members {
    /// Holds not dropped yet.
    count: usize,
    opened: std::time::Instant,
    /// Once set, nobody joins: the turn is ending.
    closing: bool,
    /// This node's turn slot, released when the turn has ended.
    slot: Option<OwnedMutexGuard<()>>,
}

#[derive(Default)]
struct Pending {
    mutations: Vec<Mutation>,
    events: Vec<SharedEvent>,
    first_lsn: Option<u64>,
    last_lsn: u64,
    /// Every position up to here has been written, or failed.
    done_through: u64,
    /// The first position that failed in this turn.
    failed_from: Option<u64>,
}

impl Pending {
    fn outcome(&self, lsn: u64) -> Result<(), StoreError> {
        match self.failed_from {
            Some(first) if lsn >= first => Err(StoreError::Unavailable(
                "the change could not be committed".into(),
            )),
            _ => Ok(()),
        }
    }
}

impl OpenTurn {
    /// Adds a member's change at store position `lsn` to the next flush.
    pub(super) fn collect(&self, lsn: u64, mutation: Mutation) {
        let mut p = self.pending.lock();
        p.first_lsn.get_or_insert(lsn);
        p.last_lsn = lsn;
        p.mutations.push(mutation);
    }

    /// Adds an event to the next flush, for the other nodes' `/events`.
    pub(super) fn collect_event(&self, event: SharedEvent) {
        self.pending.lock().events.push(event);
    }
}

/// One member's hold on a write turn; the last one to go ends the turn.
struct WriteHold {
    inner: Arc<PgInner>,
    open: Arc<OpenTurn>,
    /// Set for the member that opened the turn until its catch-up is applied.
    opener: bool,
}

impl TurnHold for WriteHold {
    fn caught_up(&mut self) {
        if std::mem::take(&mut self.opener) {
            *self.inner.current.lock() = Some(self.open.clone());
            self.inner.opened.notify_waiters();
        }
    }
}

impl Drop for WriteHold {
    fn drop(&mut self) {
        let slot = {
            let mut m = self.open.members.lock();
            m.count = m.count.saturating_sub(1);
            if m.count > 0 {
                return;
            }
            m.closing = true;
            m.slot.take()
        };
        {
            let mut current = self.inner.current.lock();
            if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &self.open)) {
                *current = None;
            }
        }
        let (inner, open) = (self.inner.clone(), self.open.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                // A failure is recorded in `progress`; nobody awaits this.
                let _ = inner.flush(&open, u64::MAX, true).await;
                drop(slot);
            });
        } else if let Ok(mut conn) = open.conn.try_lock() {
            // No runtime to unlock with: closing the connection frees the lock.
            if let Some(c) = conn.take() {
                drop(Object::take(c));
            }
        }
    }
}

/// A future a flush pipelines: everything is sent at once, in order.
type Step<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Option<i64>, tokio_postgres::Error>> + Send + 'a>,
>;

impl PgInner {
    pub(super) fn unavailable(&self, reason: String) -> StoreError {
        *self.trouble.lock() = Some(reason.clone());
        StoreError::Unavailable(reason)
    }

    /// Why taking the turn lock failed: stalled when the wait ran out
    /// (`lock_timeout`), else the database's own error.
    fn refused_turn(&self, e: &tokio_postgres::Error) -> Refused {
        if e.code() != Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) {
            return Refused::Down(why(e));
        }
        Refused::Stalled(format!(
            "another node holds the write turn and did not finish it within {} (it is frozen, or cut off from PostgreSQL); PostgreSQL ends its turn once it has been silent for {} (--turn-timeout)",
            humantime::format_duration(self.bounds.wait),
            humantime::format_duration(self.bounds.hold),
        ))
    }

    /// Notes that another node stalls the write turn (`/healthz` says so
    /// until a turn is had again) and watches for the turn to come free,
    /// so the note goes even when no write comes to this node meanwhile.
    fn stalled_by_another(self: &Arc<Self>, why: String) -> StoreError {
        *self.stalled.lock() = Some(why.clone());
        if !self.probing.swap(true, Ordering::AcqRel) {
            tokio::spawn(watch_stall(Arc::downgrade(self)));
        }
        StoreError::TurnStalled(why)
    }

    /// Takes the turn lock (waiting as a write would) and gives it straight
    /// back, applying nothing: answers whether the turn moves again.
    pub(super) async fn turn_moves(&self) -> bool {
        let Ok(conn) = self.pool.get().await else {
            return false;
        };
        let (wait_ms, hold_ms) = (setting_ms(self.bounds.wait), setting_ms(self.bounds.hold));
        let took = async {
            let lock = conn.prepare_cached(self.bounds.lock_sql).await?;
            conn.execute(&lock, &[&TURN_LOCK, &wait_ms, &hold_ms])
                .await?;
            let unlock = conn.prepare_cached(self.bounds.unlock_sql).await?;
            conn.execute(&unlock, &[&TURN_LOCK]).await
        }
        .await;
        if took.is_err() {
            // It may carry the turn's settings (or hold the lock): close it.
            drop(Object::take(conn));
            return false;
        }
        true
    }

    /// Joins the write turn open on this node, if it still takes members.
    fn join(self: &Arc<Self>) -> Option<Turn> {
        let open = self.current.lock().clone()?;
        {
            let mut m = open.members.lock();
            if m.closing || m.opened.elapsed() >= JOIN_FOR {
                return None;
            }
            m.count += 1;
        }
        Some(Turn {
            catch_up: None,
            hold: Some(Box::new(WriteHold {
                inner: self.clone(),
                open,
                opener: false,
            })),
        })
    }

    pub(super) async fn begin(self: &Arc<Self>, kind: TurnKind) -> Result<Turn, StoreError> {
        // A write has the turn by then, or is refused as stalled (the wait
        // queued on this node counts, so a queue of writes behind a stalled
        // turn is refused together rather than one wait after another).
        let deadline = tokio::time::Instant::now() + self.bounds.wait;
        let slot = loop {
            if kind == TurnKind::Read {
                break self.turns.clone().lock_owned().await;
            }
            // Join the open turn, or wait for this node's slot; a turn that
            // opens meanwhile is joined instead (so waiting changes go out
            // together rather than one turn each).
            let opened = self.opened.notified();
            tokio::pin!(opened);
            opened.as_mut().enable();
            if let Some(turn) = self.join() {
                return Ok(turn);
            }
            tokio::select! {
                slot = self.turns.clone().lock_owned() => break slot,
                () = &mut opened => {}
            }
        };
        let conn = self
            .pool
            .get()
            .await
            .map_err(|e| self.unavailable(super::why_no_connection(&e)))?;
        let mut conn = Some(conn);
        let lock_by = (kind == TurnKind::Write).then_some(deadline);
        let caught = match conn.as_mut() {
            Some(c) => self.catch_up(c, lock_by).await,
            None => Ok(None),
        };
        let catch_up = match caught {
            Ok(c) => c,
            Err(e) => {
                if let Some(c) = conn.take() {
                    // It may hold the turn lock, or carry the turn's
                    // settings: close it rather than pool it.
                    drop(Object::take(c));
                }
                return Err(match e {
                    StoreError::TurnStalled(why) => self.stalled_by_another(why),
                    StoreError::Unavailable(why) => self.unavailable(why),
                    other => other,
                });
            }
        };
        *self.trouble.lock() = None;
        if kind == TurnKind::Write {
            *self.stalled.lock() = None;
        }
        let hold: Box<dyn TurnHold> = if kind == TurnKind::Write {
            let open = Arc::new(OpenTurn {
                conn: tokio::sync::Mutex::new(conn),
                pending: parking_lot::Mutex::new(Pending::default()),
                members: parking_lot::Mutex::new(Members {
                    count: 1,
                    opened: std::time::Instant::now(),
                    closing: false,
                    slot: Some(slot),
                }),
            });
            Box::new(WriteHold {
                inner: self.clone(),
                open,
                opener: true,
            })
        } else {
            drop(conn);
            Box::new(slot)
        };
        Ok(Turn {
            catch_up,
            hold: Some(hold),
        })
    }

    /// Takes the turn lock (for a write turn, which must have it by
    /// `lock_by`) and reads what this node has not applied yet, in one
    /// round trip: the log since its cursor, or everything when it fell
    /// behind the pruned log or lost a commit.
    async fn catch_up(
        &self,
        conn: &mut Object,
        lock_by: Option<tokio::time::Instant>,
    ) -> Result<Option<CatchUp>, StoreError> {
        self.catch_up_inner(conn, lock_by)
            .await
            .map_err(|e| match e {
                Refused::Stalled(why) => StoreError::TurnStalled(why),
                Refused::Down(why) => StoreError::Unavailable(why),
            })
    }

    async fn catch_up_inner(
        &self,
        conn: &mut Object,
        lock_by: Option<tokio::time::Instant>,
    ) -> Result<Option<CatchUp>, Refused> {
        let cursor = self.cursor.load(Ordering::Acquire);
        let read = conn
            .prepare_cached(
                "SELECT h.pruned_through, l.seq, l.entry FROM cipc_head h
                 LEFT JOIN cipc_log l ON l.seq > $1
                 WHERE h.id = 1 ORDER BY l.seq",
            )
            .await
            .map_err(|e| why(&e))?;
        let cursor_param = seq_param(cursor);
        let read_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&cursor_param];
        let rows = if let Some(lock_by) = lock_by {
            // Prepared first: a query given as text is prepared when polled,
            // which would send it after the read below.
            let lock = conn
                .prepare_cached(self.bounds.lock_sql)
                .await
                .map_err(|e| why(&e))?;
            let wait = TurnBounds::lock_wait(
                lock_by.saturating_duration_since(tokio::time::Instant::now()),
            );
            let (wait_ms, hold_ms) = (setting_ms(wait), setting_ms(self.bounds.hold));
            let lock_params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
                [&TURN_LOCK, &wait_ms, &hold_ms];
            let lock = conn.execute(&lock, &lock_params);
            let rows = conn.query(&read, &read_params);
            let (locked, rows) = futures::join!(lock, rows);
            locked.map_err(|e| self.refused_turn(&e))?;
            rows
        } else {
            conn.query(&read, &read_params).await
        }
        .map_err(|e| why(&e))?;
        if self.progress.failing() {
            return Ok(Some(self.reload(conn).await?));
        }
        let pruned = rows
            .first()
            .map_or(0, |r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0));
        if pruned > cursor {
            tracing::warn!(cursor, pruned, "this node fell behind the log; reloading");
            return Ok(Some(self.reload(conn).await?));
        }
        let mut entries = Vec::new();
        for r in &rows {
            let (Some(seq), Some(body)) =
                (r.get::<_, Option<i64>>(1), r.get::<_, Option<String>>(2))
            else {
                continue;
            };
            match serde_json::from_str::<LogEntry>(&body) {
                Ok(mut entry) => {
                    entry.seq = u64::try_from(seq).unwrap_or(0);
                    entries.push(entry);
                }
                Err(e) => {
                    tracing::error!(seq, error = %e, "unreadable log entry; reloading");
                    return Ok(Some(self.reload(conn).await?));
                }
            }
        }
        let Some(last) = entries.last().map(|e| e.seq) else {
            return Ok(None);
        };
        self.cursor.store(last, Ordering::Release);
        Ok(Some(CatchUp::Entries(entries)))
    }

    async fn reload(&self, conn: &mut Object) -> Result<CatchUp, Fault> {
        let (snapshot, head) = read_snapshot(conn).await?;
        self.cursor.store(head, Ordering::Release);
        if self.progress.failing() {
            self.progress.recovered(self.progress.queued());
            let marker = self.progress.next();
            self.progress.settle(marker, None);
        }
        Ok(CatchUp::Reload(snapshot))
    }

    /// Commits what the turn's members collected (up to `upto` at least) as
    /// one log row, and answers whether position `upto` is durable. With
    /// `last`, also gives the turn lock back (the turn has ended).
    pub(super) async fn flush(
        &self,
        open: &OpenTurn,
        upto: u64,
        last: bool,
    ) -> Result<(), StoreError> {
        let mut conn = open.conn.lock().await;
        let (mutations, events, first, last_lsn) = {
            let mut p = open.pending.lock();
            if upto <= p.done_through && !last {
                return p.outcome(upto);
            }
            (
                std::mem::take(&mut p.mutations),
                std::mem::take(&mut p.events),
                p.first_lsn.take(),
                p.last_lsn,
            )
        };
        let Some(c) = conn.as_mut() else {
            // Nothing more can be committed in this turn: these changes are
            // lost now (readers must not wait for them), and the node
            // reloads at its next turn.
            let mut p = open.pending.lock();
            p.done_through = p.done_through.max(last_lsn);
            if let Some(first) = first {
                p.failed_from.get_or_insert(first);
                self.progress.settle(last_lsn, Some(first));
            }
            return Err(StoreError::Unavailable(
                "the connection was lost earlier in this turn".into(),
            ));
        };
        let writes = mutations.len();
        let written = if mutations.is_empty() && events.is_empty() {
            if last {
                unlock(c, self.bounds.unlock_sql).await
            } else {
                Ok(None)
            }
        } else {
            self.write_entry(c, mutations, events, last)
                .await
                .map(|seq| Some(i64::try_from(seq).unwrap_or(i64::MAX)))
        };
        let mut p = open.pending.lock();
        p.done_through = p.done_through.max(last_lsn);
        match written {
            Ok(seq) => {
                if let Some(seq) = seq.and_then(|s| u64::try_from(s).ok()) {
                    let before = self.cursor.fetch_max(seq, Ordering::AcqRel);
                    if seq / PRUNE_EVERY > before / PRUNE_EVERY {
                        self.prune_soon();
                    }
                }
                if first.is_some() {
                    self.progress.count_commit(writes);
                    self.progress.settle(last_lsn, None);
                }
                if last {
                    // Back to the pool, unlocked.
                    conn.take();
                }
                p.outcome(upto)
            }
            Err(e) => {
                if first.is_some() {
                    tracing::error!(error = %e, "commit to PostgreSQL failed");
                } else {
                    // Nothing was lost: e.g. a node that was frozen past
                    // --turn-timeout, whose session PostgreSQL ended.
                    tracing::warn!(error = %e, "giving the write turn back failed; closing its connection does");
                }
                if let Some(c) = conn.take() {
                    // It may hold the turn lock: close it rather than pool it.
                    drop(Object::take(c));
                }
                if let Some(first) = first {
                    p.failed_from.get_or_insert(first);
                    self.progress.settle(last_lsn, Some(first));
                }
                Err(self.unavailable(e.to_string()))
            }
        }
    }

    /// One log row with its mutations, pipelined in one transaction (one
    /// round trip once the statements are prepared); with `unlock`, the
    /// turn lock is given back in the same round trip.
    async fn write_entry(
        &self,
        conn: &mut Object,
        mutations: Vec<Mutation>,
        events: Vec<SharedEvent>,
        unlock_after: bool,
    ) -> Result<u64, Fault> {
        let e = |e: tokio_postgres::Error| Fault::Postgres {
            doing: "",
            why: why(&e),
        };
        let mut statements = Vec::new();
        for m in &mutations {
            for (sql, params) in plan(m) {
                statements.push((conn.prepare_cached(sql).await.map_err(e)?, params));
            }
        }
        let insert = conn
            .prepare_cached("INSERT INTO cipc_log (entry) VALUES ($1) RETURNING seq")
            .await
            .map_err(e)?;
        // Every statement is prepared before the pipeline starts, so they are
        // sent (and run) in order: above all, the unlock after the commit.
        let unlock_stmt = conn
            .prepare_cached(self.bounds.unlock_sql)
            .await
            .map_err(e)?;
        let entry = LogEntry {
            seq: 0,
            node: self.node.clone(),
            mutations,
            events,
        };
        let body = json(&entry);
        let client: &tokio_postgres::Client = conn;
        let mut steps: Vec<Step<'_>> = vec![
            Box::pin(async { client.batch_execute("BEGIN").await.map(|()| None) }),
            Box::pin(async {
                let row = client.query_one(&insert, &[&body]).await?;
                Ok(Some(row.get::<_, i64>(0)))
            }),
        ];
        for (stmt, params) in &statements {
            steps.push(Box::pin(async move {
                let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
                    .iter()
                    .map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
                    .collect();
                client.execute(stmt, &refs).await.map(|_| None)
            }));
        }
        steps.push(Box::pin(async {
            client
                .batch_execute(
                    "SELECT pg_notify('cipc_log', currval(pg_get_serial_sequence('cipc_log', 'seq'))::text); COMMIT",
                )
                .await
                .map(|()| None)
        }));
        if unlock_after {
            steps.push(Box::pin(async {
                client
                    .execute(&unlock_stmt, &[&TURN_LOCK])
                    .await
                    .map(|_| None)
            }));
        }
        let mut seq = None;
        for step in futures::future::join_all(steps).await {
            if let Some(s) = step.map_err(e)? {
                seq = Some(s);
            }
        }
        let seq = seq.ok_or(Fault::NoLogPosition)?;
        Ok(u64::try_from(seq).unwrap_or(0))
    }

    /// Deletes log rows older than [`LOG_KEPT_SECS`] in the background (no
    /// turn needed: nobody reads them but a node far behind, which then
    /// reloads).
    fn prune_soon(&self) {
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let Ok(conn) = pool.get().await else { return };
            let pruned = conn
                .execute(
                    "WITH gone AS (DELETE FROM cipc_log
                                   WHERE at < now() - make_interval(secs => $1) RETURNING seq)
                     UPDATE cipc_head SET pruned_through =
                         GREATEST(pruned_through, COALESCE((SELECT MAX(seq) FROM gone), 0))
                     WHERE id = 1",
                    &[&LOG_KEPT_SECS],
                )
                .await;
            if let Err(e) = pruned {
                tracing::warn!(error = %why(&e), "pruning the log failed; will retry later");
            }
        });
    }
}

/// Gives the turn lock back, with the session's own settings (`sql` is
/// [`TurnBounds::unlock_sql`]).
async fn unlock(c: &Object, sql: &str) -> Result<Option<i64>, Fault> {
    c.execute(sql, &[&TURN_LOCK])
        .await
        .map(|_| None)
        .map_err(|e| Fault::Postgres {
            doing: "",
            why: why(&e),
        })
}
