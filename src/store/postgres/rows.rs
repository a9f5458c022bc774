//! How each mutation is saved in the tables: the statements and their
//! parameters, owned so that a whole flush can be pipelined.

use crate::store::Mutation;

pub(super) use crate::store::json;

pub(super) fn seq_param(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// One statement parameter, owned so a whole flush can be pipelined.
pub(super) type Param = Box<dyn tokio_postgres::types::ToSql + Sync + Send>;

fn text(v: impl Into<String>) -> Param {
    Box::new(v.into())
}

fn int(v: i64) -> Param {
    Box::new(v)
}

/// The statements that save one mutation in the tables.
pub(super) fn plan(m: &Mutation) -> Vec<(&'static str, Vec<Param>)> {
    match m {
        Mutation::Peer(p) => vec![(
            "INSERT INTO cipc_peers (id, body) VALUES ($1, $2)
             ON CONFLICT (id) DO UPDATE SET body = excluded.body",
            vec![text(p.peer.id.to_string()), text(json(p))],
        )],
        Mutation::Command { ord, command } => vec![(
            "INSERT INTO cipc_commands (id, ord, body) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET ord = excluded.ord, body = excluded.body",
            vec![
                text(command.id.to_string()),
                int(seq_param(*ord)),
                text(json(command)),
            ],
        )],
        Mutation::ForgetCommand { id } => vec![(
            "DELETE FROM cipc_commands WHERE id = $1",
            vec![text(id.to_string())],
        )],
        Mutation::Message(msg) => vec![
            (
                "INSERT INTO cipc_messages (channel, seq, body) VALUES ($1, $2, $3)
                 ON CONFLICT (channel, seq) DO UPDATE SET body = excluded.body",
                vec![
                    text(msg.channel.clone()),
                    int(seq_param(msg.seq)),
                    text(json(msg)),
                ],
            ),
            (
                "INSERT INTO cipc_channels (name, last_seq) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE
                 SET last_seq = GREATEST(cipc_channels.last_seq, excluded.last_seq)",
                vec![text(msg.channel.clone()), int(seq_param(msg.seq))],
            ),
        ],
        Mutation::Trim {
            channel,
            from,
            below,
        } => vec![(
            // Bounded below too: the rows earlier trims deleted stay in the
            // index until vacuumed, and an unbounded range walks them all.
            "DELETE FROM cipc_messages WHERE channel = $1 AND seq >= $2 AND seq < $3",
            vec![
                text(channel.clone()),
                int(seq_param(*from)),
                int(seq_param(*below)),
            ],
        )],
        Mutation::Signal(sig) => vec![(
            "INSERT INTO cipc_signals (name, body) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET body = excluded.body",
            vec![text(sig.name.clone()), text(json(sig))],
        )],
        Mutation::ForgetPeer { id } => vec![(
            "DELETE FROM cipc_peers WHERE id = $1",
            vec![text(id.to_string())],
        )],
        Mutation::ForgetChannel { name } => vec![
            (
                "DELETE FROM cipc_messages WHERE channel = $1",
                vec![text(name.clone())],
            ),
            (
                "DELETE FROM cipc_channels WHERE name = $1",
                vec![text(name.clone())],
            ),
        ],
        Mutation::ForgetSignal { name } => vec![(
            "DELETE FROM cipc_signals WHERE name = $1",
            vec![text(name.clone())],
        )],
        Mutation::Question(q) => vec![(
            "INSERT INTO cipc_questions (id, body) VALUES ($1, $2)
             ON CONFLICT (id) DO UPDATE SET body = excluded.body",
            vec![text(q.id.to_string()), text(json(q))],
        )],
        Mutation::ForgetQuestion { id } => vec![(
            "DELETE FROM cipc_questions WHERE id = $1",
            vec![text(id.to_string())],
        )],
        Mutation::Lease(l) => vec![(
            "INSERT INTO cipc_leases (id, body) VALUES ($1, $2)
             ON CONFLICT (id) DO UPDATE SET body = excluded.body",
            vec![text(l.lease.id.to_string()), text(json(l))],
        )],
        Mutation::ForgetLease { id } => vec![(
            "DELETE FROM cipc_leases WHERE id = $1",
            vec![text(id.to_string())],
        )],
        Mutation::Session { hash, expires } => vec![(
            "INSERT INTO cipc_sessions (hash, expires_at) VALUES ($1, $2)
             ON CONFLICT (hash) DO UPDATE SET expires_at = excluded.expires_at",
            vec![text(hash.clone()), int(expires.millis())],
        )],
        Mutation::EndSession { hash } => vec![(
            "DELETE FROM cipc_sessions WHERE hash = $1",
            vec![text(hash.clone())],
        )],
        Mutation::Reset => vec![
            ("DELETE FROM cipc_peers", Vec::new()),
            ("DELETE FROM cipc_commands", Vec::new()),
            ("DELETE FROM cipc_messages", Vec::new()),
            ("DELETE FROM cipc_channels", Vec::new()),
            ("DELETE FROM cipc_signals", Vec::new()),
            ("DELETE FROM cipc_questions", Vec::new()),
            ("DELETE FROM cipc_leases", Vec::new()),
        ],
    }
}
