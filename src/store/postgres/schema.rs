//! The schema, created and migrated by the broker at start, and reading the
//! whole state back (at start, and when a node must start over).

use super::why;
use crate::api::Message;
use crate::store::{
    decode_row, sh_double_quoted, sql_text, ChannelHead, Fault, RowAt, Snapshot, UnreadableRow,
    RECENT_KEPT,
};
use deadpool_postgres::Object;

/// The advisory lock held while the schema is migrated.
const MIGRATION_LOCK: i64 = 0x6369_7063_0000_0002;

/// The schema, one versioned step at a time. A step is never edited once
/// released; changes are new steps.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        "CREATE TABLE cipc_peers (id TEXT PRIMARY KEY, body TEXT NOT NULL);
     CREATE TABLE cipc_commands (id TEXT PRIMARY KEY, ord BIGINT NOT NULL, body TEXT NOT NULL);
     CREATE TABLE cipc_messages (channel TEXT NOT NULL, seq BIGINT NOT NULL, body TEXT NOT NULL,
                                 PRIMARY KEY (channel, seq));
     CREATE TABLE cipc_channels (name TEXT PRIMARY KEY, last_seq BIGINT NOT NULL);
     CREATE TABLE cipc_signals (name TEXT PRIMARY KEY, body TEXT NOT NULL);
     CREATE TABLE cipc_questions (id TEXT PRIMARY KEY, body TEXT NOT NULL);
     CREATE TABLE cipc_log (seq BIGSERIAL PRIMARY KEY, at TIMESTAMPTZ NOT NULL DEFAULT now(),
                            entry TEXT NOT NULL);
     CREATE TABLE cipc_sessions (hash TEXT PRIMARY KEY, expires_at BIGINT NOT NULL);
     CREATE TABLE cipc_head (id INT PRIMARY KEY CHECK (id = 1), pruned_through BIGINT NOT NULL);
     INSERT INTO cipc_head (id, pruned_through) VALUES (1, 0);",
    ),
    (
        2,
        "CREATE TABLE cipc_leases (id TEXT PRIMARY KEY, body TEXT NOT NULL);",
    ),
];

/// Applies every migration step not applied yet, one node at a time.
pub(super) async fn migrate(conn: &mut Object) -> Result<(), Fault> {
    let e = |e: tokio_postgres::Error| Fault::Postgres {
        doing: "migrating the schema: ",
        why: why(&e),
    };
    conn.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(e)?;
    let result = async {
        conn.batch_execute(
            "CREATE TABLE IF NOT EXISTS cipc_schema_migrations (
                 version INT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await
        .map_err(e)?;
        let applied: Vec<i32> = conn
            .query("SELECT version FROM cipc_schema_migrations", &[])
            .await
            .map_err(e)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if let Some(newer) = applied.iter().find(|v| **v > MIGRATIONS.len() as i32) {
            return Err(Fault::NewerSchema {
                found: *newer,
                known: MIGRATIONS.len(),
            });
        }
        for (version, sql) in MIGRATIONS {
            if applied.contains(version) {
                continue;
            }
            let tx = conn.transaction().await.map_err(e)?;
            tx.batch_execute(sql).await.map_err(e)?;
            tx.execute(
                "INSERT INTO cipc_schema_migrations (version) VALUES ($1)",
                &[version],
            )
            .await
            .map_err(e)?;
            tx.commit().await.map_err(e)?;
            tracing::info!(version, "database schema migrated");
        }
        Ok(())
    }
    .await;
    let unlocked = conn
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    result?;
    unlocked.map(|_| ()).map_err(e)
}

/// A stored body read back after start-up (a message): the JSON error, for
/// the caller to say what it was reading.
pub(super) fn parse<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, serde_json::Error> {
    serde_json::from_str(body)
}

/// Decodes one row of the state at start-up; an unreadable one names its
/// table and key and how to get past it (delete it with `psql`).
fn decode<T: serde::de::DeserializeOwned>(body: &str, at: &RowAt<'_>) -> Result<T, UnreadableRow> {
    decode_row(
        body,
        at,
        |delete| format!("psql \"<the --store URL>\" -c {}", sh_double_quoted(delete)),
        "point --store at another (empty) database and keep this one",
    )
}

/// Reads the whole state and the log position it reflects, in one
/// consistent view.
pub(super) async fn read_snapshot(conn: &mut Object) -> Result<(Snapshot, u64), Fault> {
    let e = |e: tokio_postgres::Error| Fault::Postgres {
        doing: "reading the state: ",
        why: why(&e),
    };
    let tx = conn
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(e)?;
    let head: i64 = tx
        .query_one(
            "SELECT GREATEST((SELECT COALESCE(MAX(seq), 0) FROM cipc_log),
                             (SELECT pruned_through FROM cipc_head WHERE id = 1))",
            &[],
        )
        .await
        .map_err(e)?
        .get(0);
    let keyed = |rows: Vec<tokio_postgres::Row>| -> Vec<(String, String)> {
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    };
    let mut snap = Snapshot::default();
    for (id, b) in keyed(
        tx.query("SELECT id, body FROM cipc_peers", &[])
            .await
            .map_err(e)?,
    ) {
        snap.peers
            .push(decode(&b, &RowAt::new("cipc_peers", "id", &id))?);
    }
    for (name, b) in keyed(
        tx.query("SELECT name, body FROM cipc_signals ORDER BY name", &[])
            .await
            .map_err(e)?,
    ) {
        snap.signals
            .push(decode(&b, &RowAt::new("cipc_signals", "name", &name))?);
    }
    for (id, b) in keyed(
        tx.query("SELECT id, body FROM cipc_questions ORDER BY id", &[])
            .await
            .map_err(e)?,
    ) {
        snap.questions
            .push(decode(&b, &RowAt::new("cipc_questions", "id", &id))?);
    }
    for (id, b) in keyed(
        tx.query("SELECT id, body FROM cipc_leases ORDER BY id", &[])
            .await
            .map_err(e)?,
    ) {
        snap.leases
            .push(decode(&b, &RowAt::new("cipc_leases", "id", &id))?);
    }
    for r in tx
        .query("SELECT id, ord, body FROM cipc_commands ORDER BY ord", &[])
        .await
        .map_err(e)?
    {
        let id: String = r.get(0);
        let ord: i64 = r.get(1);
        let body: String = r.get(2);
        snap.commands.push((
            u64::try_from(ord).unwrap_or(0),
            decode(&body, &RowAt::new("cipc_commands", "id", &id))?,
        ));
    }
    for r in tx
        .query(
            "SELECT c.name, c.last_seq, MIN(m.seq) FROM cipc_channels c
             LEFT JOIN cipc_messages m ON m.channel = c.name
             GROUP BY c.name, c.last_seq ORDER BY c.name",
            &[],
        )
        .await
        .map_err(e)?
    {
        let last_seq = u64::try_from(r.get::<_, i64>(1)).unwrap_or(0);
        let first: Option<i64> = r.get(2);
        snap.channels.push(ChannelHead {
            name: r.get(0),
            last_seq,
            first_seq: first.map_or(last_seq + 1, |f| u64::try_from(f.max(1)).unwrap_or(1)),
        });
    }
    for r in tx
        .query("SELECT hash, expires_at FROM cipc_sessions", &[])
        .await
        .map_err(e)?
    {
        snap.sessions
            .push((r.get(0), crate::time::Timestamp(r.get(1))));
    }
    let kept = i64::try_from(RECENT_KEPT).unwrap_or(i64::MAX);
    for r in tx
        .query(
            "SELECT channel, seq, body FROM (
                 SELECT body, channel, seq,
                        row_number() OVER (PARTITION BY channel ORDER BY seq DESC) AS newest
                 FROM cipc_messages) recent
             WHERE newest <= $1 ORDER BY channel, seq",
            &[&kept],
        )
        .await
        .map_err(e)?
    {
        let channel: String = r.get(0);
        let seq: i64 = r.get(1);
        let body: String = r.get(2);
        let at = RowAt {
            table: "cipc_messages",
            filter: format!("channel = {} AND seq = {seq}", sql_text(&channel)),
        };
        snap.messages.push(decode::<Message>(&body, &at)?);
    }
    tx.commit().await.map_err(e)?;
    Ok((snap, u64::try_from(head).unwrap_or(0)))
}
