//! How leases read to people: who holds one, until when, and what to do
//! when one is in the way. One place, so `cipc lease`, `cipc guard check`
//! and the Claude Code hooks say it the same way.

use crate::api::{Lease, LeaseConflict};
use crate::cli::output::{short_id, Output};
use crate::time::Timestamp;
use std::time::Duration;

/// The holder as people know it: `backend (alice)`, or `backend`.
pub fn holder(l: &Lease) -> String {
    match l.holder_name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => format!("{} ({name})", l.holder_role),
        None => l.holder_role.clone(),
    }
}

/// A time of day on the wire's clock: `14:05 UTC`. Leases last at most
/// 24 hours, so with [`until`]'s "in ..." the day is never in doubt.
pub fn clock(t: Timestamp) -> String {
    let secs = t.millis().div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02} UTC", secs / 3600, secs % 3600 / 60)
}

/// How long from `now` until `t`, for people: `12m`, `1h 5m`, `40s`
/// (at most two units); `now` when it has passed.
pub fn remaining(t: Timestamp, now: Timestamp) -> String {
    let ms = t.millis().saturating_sub(now.millis());
    if ms < 1000 {
        return "now".into();
    }
    let secs = u64::try_from(ms / 1000).unwrap_or(u64::MAX);
    // Past a minute the seconds are noise.
    let rounded = if secs >= 60 { secs - secs % 60 } else { secs };
    let text = humantime::format_duration(Duration::from_secs(rounded)).to_string();
    text.split(' ').take(2).collect::<Vec<_>>().join(" ")
}

/// When a lease ends unless renewed: `14:05 UTC (in 12m)`.
pub fn until(l: &Lease, now: Timestamp) -> String {
    format!(
        "{} (in {})",
        clock(l.expires_at),
        remaining(l.expires_at, now)
    )
}

/// What to do about a lease in the way: ask its holder, or wait.
pub fn advice(l: &Lease) -> String {
    format!(
        "ask {} with `cipc send {} release-lease --param lease={}`, or wait until {}",
        holder(l),
        l.holder,
        l.id,
        clock(l.expires_at)
    )
}

/// `: why` when the lease says why, else nothing.
fn why(l: &Lease) -> String {
    l.reason
        .as_deref()
        .filter(|r| !r.trim().is_empty())
        .map_or_else(String::new, |r| format!(": {r}"))
}

/// ` (shared)` for a shared lease.
fn mode(l: &Lease) -> &'static str {
    if l.exclusive {
        ""
    } else {
        " (shared)"
    }
}

/// One line about a lease in the way of `path`: the path, the holder,
/// until when and why.
pub fn conflict_line(path: &str, l: &Lease, now: Timestamp) -> String {
    format!(
        "{path} is held by {}{} until {}{} [lease {}]",
        holder(l),
        mode(l),
        until(l, now),
        why(l),
        short_id(l.id)
    )
}

/// One line about a lease that stands in the way of a request: the
/// holder, every path it holds, until when and why.
pub fn holding_line(l: &Lease, now: Timestamp) -> String {
    format!(
        "{} holds {}{} until {}{} [lease {}]",
        holder(l),
        l.paths.join(", "),
        mode(l),
        until(l, now),
        why(l),
        short_id(l.id)
    )
}

/// The sentences for paths other peers hold (as `GET /leases/check`
/// answers): one line per path, then one line of advice per lease.
pub fn check_lines(conflicts: &[LeaseConflict], now: Timestamp) -> Vec<String> {
    let mut lines: Vec<String> = conflicts
        .iter()
        .map(|c| format!("  {}", conflict_line(&c.path, &c.lease, now)))
        .collect();
    let mut seen = std::collections::HashSet::new();
    for c in conflicts {
        if seen.insert(c.lease.id) {
            lines.push(format!("  → {}", advice(&c.lease)));
        }
    }
    lines
}

/// The sentences for a refused lease request: each lease in the way,
/// with its paths, and what to do.
pub fn refusal_lines(held: &[Lease], asked_exclusive: bool, now: Timestamp) -> Vec<String> {
    let mut lines = Vec::new();
    for l in held {
        lines.push(format!("  {}", holding_line(l, now)));
        lines.push(format!("  → {}", advice(l)));
    }
    if asked_exclusive && !held.is_empty() && held.iter().all(|l| !l.exclusive) {
        lines.push(
            "  (they are shared: to work beside them, ask for a shared lease with --shared)".into(),
        );
    }
    lines
}

/// The leases table: id, paths, holder, mode, reason, expiry (and the
/// repo, when several may show).
pub fn lease_table(
    out: &Output,
    leases: &[Lease],
    with_repo: bool,
    now: Timestamp,
) -> comfy_table::Table {
    let mut header = vec!["ID"];
    if with_repo {
        header.push("REPO");
    }
    header.extend(["PATHS", "HOLDER", "MODE", "REASON", "EXPIRES"]);
    let mut t = out.new_table(&header);
    for l in leases {
        let mut row = vec![short_id(l.id)];
        if with_repo {
            row.push(l.repo.clone());
        }
        row.extend([
            l.paths.join(" "),
            holder(l),
            if l.exclusive { "exclusive" } else { "shared" }.to_string(),
            l.reason.clone().unwrap_or_default(),
            until(l, now),
        ]);
        t.add_row(row);
    }
    t
}

/// The table of paths other peers hold.
pub fn check_table(
    out: &Output,
    conflicts: &[LeaseConflict],
    now: Timestamp,
) -> comfy_table::Table {
    let mut t = out.new_table(&["PATH", "HELD BY", "UNTIL", "REASON", "LEASE"]);
    for c in conflicts {
        t.add_row(vec![
            c.path.clone(),
            holder(&c.lease),
            until(&c.lease, now),
            c.lease.reason.clone().unwrap_or_default(),
            short_id(c.lease.id),
        ]);
    }
    t
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::api::LeaseStatus;

    /// A held lease for tests: `paths` of `repo`, by backend (alice).
    pub(crate) fn lease(paths: &[&str], expires_in_ms: i64, now: Timestamp) -> Lease {
        Lease {
            id: uuid::Uuid::now_v7(),
            holder: uuid::Uuid::now_v7(),
            holder_role: "backend".into(),
            holder_name: Some("alice".into()),
            repo: "github.com/Org/App".into(),
            paths: paths.iter().map(|p| (*p).to_string()).collect(),
            exclusive: true,
            reason: Some("refactoring users".into()),
            created_at: now,
            expires_at: now.plus_millis(expires_in_ms),
            status: LeaseStatus::Held,
            released_at: None,
        }
    }

    #[test]
    fn times_read_as_a_clock_and_a_countdown() {
        let t: Timestamp = "2026-11-24T14:05:59.000Z".parse().unwrap();
        assert_eq!(clock(t), "14:05 UTC");
        let now: Timestamp = "2026-11-24T13:53:10.000Z".parse().unwrap();
        assert_eq!(remaining(t, now), "12m");
        assert_eq!(remaining(now.plus_millis(40_000), now), "40s");
        assert_eq!(remaining(now.plus_millis(3_930_000), now), "1h 5m");
        assert_eq!(remaining(now, t), "now");
    }

    #[test]
    fn a_conflict_names_path_holder_expiry_reason_and_what_to_do() {
        let now = Timestamp::now();
        let l = lease(&["src/api/"], 12 * 60_000 + 500, now);
        let c = [LeaseConflict {
            path: "src/api/users.rs".into(),
            lease: l.clone(),
        }];
        let lines = check_lines(&c, now);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].contains("src/api/users.rs is held by backend (alice) until")
                && lines[0].contains("(in 12m): refactoring users"),
            "{lines:?}"
        );
        assert!(
            lines[1].contains("ask backend (alice) with `cipc send ")
                && lines[1].contains(&l.id.to_string())
                && lines[1].contains("or wait until"),
            "{lines:?}"
        );
        let mut shared = l;
        shared.exclusive = false;
        shared.holder_name = None;
        let lines = refusal_lines(&[shared], true, now);
        assert!(
            lines[0].starts_with("  backend holds src/api/ (shared) until"),
            "{lines:?}"
        );
        assert!(lines[2].contains("--shared"), "{lines:?}");
    }
}
