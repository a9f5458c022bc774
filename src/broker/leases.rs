//! Leases: a peer holds repo-relative path patterns of one repository for a
//! while, so sessions that share a code base see who edits what before they
//! collide. A request is granted all or nothing; one that conflicts with
//! another peer's lease (the rule is [`super::lease_paths`]) takes nothing
//! and names the leases in the way. A lease ends when released (by its
//! holder, or a person), at its ttl (the sweeper's due-time schedule,
//! [`State::lease_expiry`]), and when its holder disconnects, goes offline
//! or is forgotten ([`Broker::end_leases_of`], called from `peers.rs`).
//!
//! Durable like questions; ended leases are kept up to the command
//! retention. Every grant and end takes the write turn, so with several
//! nodes the conflict check runs on the state every node agrees on, and two
//! nodes never grant conflicting leases, even when the requests race.
//!
//! (A file of one concern, leases, long because every route of it is here.)

use super::lease_paths::{self, PathPattern};
use super::peers::unknown_peer;
use super::{Broker, BrokerError, Caller, State};
use crate::api::{
    Lease, LeaseConflict, LeaseRequest, LeaseStatus, RefusedEdit, DEFAULT_LEASE_TTL_MS,
    MAX_LEASE_PATHS, MAX_LEASE_REASON_LEN, MAX_LEASE_TTL_MS, MAX_REPO_LEN, MIN_LEASE_TTL_MS,
};
use crate::error_code::ErrorCode;
use crate::store::{Commit, Mutation, StoredLease, TurnKind};
use crate::time::Timestamp;
use uuid::Uuid;

fn invalid(message: String) -> BrokerError {
    BrokerError::new(ErrorCode::InvalidLease, message)
}

fn unknown_lease(id: Uuid) -> BrokerError {
    BrokerError::new(
        ErrorCode::UnknownLease,
        format!(
            "no lease with id {id}; list the held ones with GET /leases (or `cipc lease list`)"
        ),
    )
}

/// A lease request or check that names no peer.
fn no_peer(what: &str) -> BrokerError {
    BrokerError::new(
        ErrorCode::NotRegistered,
        format!("{what} is done by a peer: name it with X-Cipc-Peer and prove it with X-Cipc-Peer-Key (the id and key POST /peers/connect answered; `cipc` reads CIPC_PEER and CIPC_PEER_KEY)"),
    )
}

/// The repo a request names, trimmed; required, 1-512 characters, one line.
pub(crate) fn check_repo(repo: Option<&str>) -> Result<String, BrokerError> {
    let repo = repo.map(str::trim).unwrap_or_default();
    if repo.is_empty() {
        return Err(invalid(
            "repo is missing: every lease and check is within one repository; pass the name clients derive (the origin remote URL without scheme, user and .git, e.g. github.com/acme/shop, else the top-level directory's name)".into(),
        ));
    }
    let len = repo.chars().count();
    if len > MAX_REPO_LEN {
        return Err(invalid(format!(
            "repo is {len} characters long; at most {MAX_REPO_LEN} (e.g. github.com/acme/shop)"
        )));
    }
    if repo.chars().any(char::is_control) {
        return Err(invalid(format!(
            "repo {repo:?} contains a control character; give it on one line, e.g. github.com/acme/shop"
        )));
    }
    Ok(repo.to_string())
}

/// Parses the paths of a request or check: 1-100 valid patterns.
pub(crate) fn check_paths(paths: &[String]) -> Result<Vec<PathPattern>, BrokerError> {
    if paths.is_empty() || paths.len() > MAX_LEASE_PATHS {
        return Err(invalid(format!(
            "give 1-{MAX_LEASE_PATHS} paths (got {}); for many files lease their directory (src/db/) or a glob (src/**/*.sql)",
            paths.len()
        )));
    }
    paths
        .iter()
        .map(|p| PathPattern::parse(p).map_err(invalid))
        .collect()
}

/// A ttl in ms: default 30 min, 1 s to 24 h, never clamped.
fn check_ttl(ttl: Option<u64>) -> Result<u64, BrokerError> {
    match ttl {
        None => Ok(DEFAULT_LEASE_TTL_MS),
        Some(t) if (MIN_LEASE_TTL_MS..=MAX_LEASE_TTL_MS).contains(&t) => Ok(t),
        Some(t) => Err(invalid(format!(
            "ttl={t} ms is out of range: a lease lasts {MIN_LEASE_TTL_MS} ms (1 s) to {MAX_LEASE_TTL_MS} ms (24 h); leave it out for 30 minutes, and renew a lease to keep it longer"
        ))),
    }
}

fn check_reason(reason: Option<String>) -> Result<Option<String>, BrokerError> {
    let reason = reason
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    if let Some(r) = &reason {
        let len = r.chars().count();
        if len > MAX_LEASE_REASON_LEN {
            return Err(invalid(format!(
                "reason is {len} characters long; at most {MAX_LEASE_REASON_LEN} (one line saying what you are doing, for whoever is refused)"
            )));
        }
    }
    Ok(reason)
}

/// `ms` from `now`.
fn after(now: Timestamp, ms: u64) -> Timestamp {
    now.plus_millis(i64::try_from(ms).unwrap_or(i64::MAX))
}

/// One line naming a lease for whoever it stands in the way of: its paths,
/// holder, until when and why.
pub fn describe_lease(l: &Lease) -> String {
    let name = l
        .holder_name
        .as_deref()
        .map(|n| format!(" {n:?}"))
        .unwrap_or_default();
    let why = l
        .reason
        .as_deref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    let kind = if l.exclusive { "" } else { " shared" };
    format!(
        "{} held{kind} by {}{name} (peer {}) until {}{why}",
        l.paths.join(", "),
        l.holder_role,
        l.holder,
        l.expires_at
    )
}

impl State {
    /// The held leases of `repo` in force at `now`, oldest first (one past
    /// its expiry that the sweeper has not ended yet no longer counts).
    fn held_in<'a>(
        &'a self,
        repo: &str,
        now: Timestamp,
    ) -> impl Iterator<Item = &'a super::state::LeaseEntry> + 'a {
        self.leases_in_repo
            .get(repo)
            .into_iter()
            .flatten()
            .filter_map(|id| self.leases.get(id))
            .filter(move |e| e.lease.status == LeaseStatus::Held && e.lease.expires_at > now)
    }
}

impl Broker {
    /// `POST /leases`: grants the caller (a registered peer) a lease on
    /// `paths` of `repo`, or refuses all of it with `lease_conflict` naming
    /// the other peers' leases in the way. The caller's own leases never
    /// stand in its way. Taking a lease counts as contact from its holder.
    pub async fn acquire_lease(
        &self,
        req: LeaseRequest,
        caller: &Caller,
    ) -> Result<Lease, BrokerError> {
        let holder = caller.peer.ok_or_else(|| no_peer("taking a lease"))?;
        let repo = check_repo(req.repo.as_deref())?;
        let patterns = check_paths(&req.paths)?;
        let ttl = check_ttl(req.ttl)?;
        let reason = check_reason(req.reason)?;
        let exclusive = req.exclusive.unwrap_or(true);
        // Every node decides on the same state: the turn first applies the
        // leases other nodes granted, and no other node grants one until
        // this one is committed.
        let _turn = self.turn(TurnKind::Write).await?;
        let now = self.now();
        let (lease, commits) = {
            let mut st = self.lock();
            if !st.peers.contains_key(&holder) {
                return Err(unknown_peer(holder));
            }
            self.prove_in(&st, holder, caller)?;
            let in_way: Vec<&super::state::LeaseEntry> = st
                .held_in(&repo, now)
                .filter(|e| e.lease.holder != holder)
                .filter(|e| {
                    lease_paths::conflict(&patterns, exclusive, &e.patterns, e.lease.exclusive)
                })
                .collect();
            if !in_way.is_empty() {
                // Name the requested paths that collide, not all of them.
                let colliding: Vec<&str> = req
                    .paths
                    .iter()
                    .zip(&patterns)
                    .filter(|(_, p)| {
                        in_way
                            .iter()
                            .any(|e| e.patterns.iter().any(|q| q.could_overlap(p)))
                    })
                    .map(|(raw, _)| raw.as_str())
                    .collect();
                let list: Vec<String> = in_way.iter().map(|e| describe_lease(&e.lease)).collect();
                let conflicts = in_way.iter().map(|e| e.lease.clone()).collect();
                return Err(BrokerError::lease_conflict(
                    format!(
                        "nothing was leased: {} in {repo} collide(s) with {}; wait for it to be released or to expire, ask its holder (send_command to its peer id), or work on other paths",
                        colliding.join(", "),
                        list.join("; ")
                    ),
                    conflicts,
                ));
            }
            let max = self.inner.config.max_leases.max(1);
            if st.lease_expiry.len() >= max {
                return Err(BrokerError::new(
                    ErrorCode::TooManyLeases,
                    format!("the broker already holds {max} leases; release ones you no longer need (DELETE /leases/{{id}}) or wait for some to expire"),
                ));
            }
            let mut commits = Vec::new();
            self.revive_for(&mut st, holder, now, &mut commits);
            let peer = st
                .peers
                .get(&holder)
                .map(|e| e.peer.clone())
                .ok_or_else(|| unknown_peer(holder))?;
            let lease = Lease {
                id: Uuid::now_v7(),
                holder,
                holder_role: peer.role,
                holder_name: peer.name,
                repo,
                paths: req.paths,
                exclusive,
                reason,
                created_at: now,
                expires_at: after(now, ttl),
                status: LeaseStatus::Held,
                released_at: None,
            };
            self.lease_changed(&mut st, lease.clone(), ttl, Some(patterns), &mut commits);
            (lease, commits)
        };
        tracing::info!(lease = %lease.id, holder = %holder, repo = %lease.repo, paths = lease.paths.len(), "lease granted");
        Broker::committed(commits).await?;
        Ok(lease)
    }

    /// `GET /leases?repo=&holder=`: the held leases, oldest first.
    pub async fn leases(&self, repo: Option<&str>, holder: Option<Uuid>) -> Vec<Lease> {
        // A lease granted on another node a moment ago is listed here too.
        self.sync().await;
        let now = self.now();
        let st = self.lock();
        let mut out: Vec<Lease> = st
            .lease_expiry
            .iter()
            .filter_map(|(_, id)| st.leases.get(id))
            .map(|e| &e.lease)
            .filter(|l| l.expires_at > now)
            .filter(|l| repo.is_none_or(|r| l.repo == r))
            .filter(|l| holder.is_none_or(|h| l.holder == h))
            .cloned()
            .collect();
        out.sort_by_key(|l| l.id);
        out
    }

    /// One lease, held or ended (while retention keeps it).
    pub fn lease(&self, id: Uuid) -> Result<Lease, BrokerError> {
        self.lock()
            .leases
            .get(&id)
            .map(|e| e.lease.clone())
            .ok_or_else(|| unknown_lease(id))
    }

    /// `GET /leases/check`: for each of `paths`, the held leases of other
    /// peers in `repo` that cover it. An exclusive one always counts; a
    /// shared one counts unless `caller` itself holds a lease there that
    /// covers the path (then it shares the path, and may edit it); the
    /// caller's own never count.
    pub async fn check_leases(
        &self,
        repo: Option<&str>,
        paths: &[String],
        caller: &Caller,
    ) -> Result<Vec<LeaseConflict>, BrokerError> {
        let repo = check_repo(repo)?;
        let patterns = check_paths(paths)?;
        self.sync().await;
        let now = self.now();
        let st = self.lock();
        // The caller's own leases are left out (and its shares let others'
        // shared ones pass): it must be who it says.
        if let Some(peer) = caller.peer {
            self.prove_in(&st, peer, caller)?;
        }
        let mine: Vec<&PathPattern> = st
            .held_in(&repo, now)
            .filter(|e| Some(e.lease.holder) == caller.peer)
            .flat_map(|e| &e.patterns)
            .collect();
        let mut out = Vec::new();
        for (path, pattern) in paths.iter().zip(&patterns) {
            let shares = mine.iter().any(|q| q.covers(pattern));
            for e in st.held_in(&repo, now) {
                if Some(e.lease.holder) == caller.peer || (shares && !e.lease.exclusive) {
                    continue;
                }
                if e.patterns.iter().any(|q| q.could_overlap(pattern)) {
                    out.push(LeaseConflict {
                        path: path.clone(),
                        lease: e.lease.clone(),
                    });
                }
            }
        }
        Ok(out)
    }

    /// `POST /leases/{id}/renew`: the holder extends a held lease to `ttl`
    /// from now (default: the ttl it was taken or last renewed with).
    pub async fn renew_lease(
        &self,
        id: Uuid,
        ttl: Option<u64>,
        caller: &Caller,
    ) -> Result<Lease, BrokerError> {
        let ttl = ttl.map(|t| check_ttl(Some(t))).transpose()?;
        let _turn = self.turn(TurnKind::Write).await?;
        let now = self.now();
        let (lease, commits) = {
            let mut st = self.lock();
            let e = st.leases.get(&id).ok_or_else(|| unknown_lease(id))?;
            let holder = e.lease.holder;
            if caller.peer != Some(holder) {
                return Err(BrokerError::new(
                    ErrorCode::NotLeaseHolder,
                    format!(
                        "only its holder may renew lease {id}: {}; call as that peer (X-Cipc-Peer and its key), or take a lease of your own once it ends",
                        describe_lease(&e.lease)
                    ),
                ));
            }
            self.prove_in(&st, holder, caller)?;
            let ttl = ttl.unwrap_or(e.ttl);
            let mut commits = Vec::new();
            self.end_if_past(&mut st, id, now, &mut commits);
            let e = st.leases.get(&id).ok_or_else(|| unknown_lease(id))?;
            ended(&e.lease, "renewed")?;
            let mut lease = e.lease.clone();
            lease.expires_at = after(now, ttl);
            self.revive_for(&mut st, holder, now, &mut commits);
            self.lease_changed(&mut st, lease.clone(), ttl, None, &mut commits);
            (lease, commits)
        };
        Broker::committed(commits).await?;
        Ok(lease)
    }

    /// `DELETE /leases/{id}`: releases a held lease. Its holder may, and so
    /// may a person (a caller that names no peer: the dashboard, `cipc`
    /// without a peer); another peer may not.
    pub async fn release_lease(&self, id: Uuid, caller: &Caller) -> Result<Lease, BrokerError> {
        let _turn = self.turn(TurnKind::Write).await?;
        let now = self.now();
        let (lease, commits) = {
            let mut st = self.lock();
            let e = st.leases.get(&id).ok_or_else(|| unknown_lease(id))?;
            if let Some(p) = caller.peer {
                if p != e.lease.holder {
                    return Err(BrokerError::new(
                        ErrorCode::NotLeaseHolder,
                        format!(
                            "peer {p} may not release lease {id}, which is not its own: {}; ask its holder (send_command to its peer id), or a person can release it from the dashboard",
                            describe_lease(&e.lease)
                        ),
                    ));
                }
                self.prove_in(&st, p, caller)?;
            }
            let mut commits = Vec::new();
            self.end_if_past(&mut st, id, now, &mut commits);
            let e = st.leases.get(&id).ok_or_else(|| unknown_lease(id))?;
            ended(&e.lease, "released")?;
            let lease = self.end_lease(&mut st, id, LeaseStatus::Released, now, &mut commits);
            (lease.ok_or_else(|| unknown_lease(id))?, commits)
        };
        tracing::info!(lease = %id, by = ?caller.peer, "lease released");
        Broker::committed(commits).await?;
        Ok(lease)
    }

    /// `POST /leases/refusals`: a peer's hook refused an edit because of
    /// leases. Nothing changes and nothing is stored: an `edit_refused`
    /// event (who, which paths, which tool, the leases in the way) tells
    /// the person, and the event history keeps it.
    pub async fn report_refused_edit(
        &self,
        req: RefusedEdit,
        caller: &Caller,
    ) -> Result<(), BrokerError> {
        let peer = caller
            .peer
            .ok_or_else(|| no_peer("reporting a refused edit"))?;
        let repo = check_repo(Some(&req.repo))?;
        check_paths(&req.paths)?;
        let tool = req
            .tool
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        if tool.as_ref().is_some_and(|t| t.chars().count() > 64) {
            return Err(invalid(
                "tool is longer than 64 characters; name the tool (Edit, Write, ...)".into(),
            ));
        }
        if req.leases.len() > MAX_LEASE_PATHS {
            return Err(invalid(format!(
                "name at most {MAX_LEASE_PATHS} leases in the way (got {})",
                req.leases.len()
            )));
        }
        self.sync().await;
        let now = self.now();
        let mut st = self.lock();
        let who = st
            .peers
            .get(&peer)
            .ok_or_else(|| unknown_peer(peer))?
            .peer
            .clone();
        self.prove_in(&st, peer, caller)?;
        let leases: Vec<Lease> = req
            .leases
            .iter()
            .filter_map(|id| st.leases.get(id).map(|e| e.lease.clone()))
            .collect();
        st.events.push(
            "edit_refused",
            &serde_json::json!({
                "peer": who.id,
                "peerRole": who.role,
                "peerName": who.name,
                "repo": repo,
                "paths": req.paths,
                "tool": tool,
                "leases": leases,
                "at": now,
            }),
        );
        Ok(())
    }

    /// Releases `holder`'s held leases in `repo` (every repo when `None`)
    /// that name one of `paths` (a trailing `/` aside), or all of them when
    /// `paths` is empty: what MCP's `release_paths` does. 404 when none
    /// matches, listing what the holder does hold.
    pub async fn release_leases_of(
        &self,
        repo: Option<&str>,
        paths: &[String],
        caller: &Caller,
    ) -> Result<Vec<Lease>, BrokerError> {
        let holder = caller.peer.ok_or_else(|| no_peer("releasing leases"))?;
        let repo = repo.map(|r| check_repo(Some(r))).transpose()?;
        let norm = |p: &str| p.trim_end_matches('/').to_string();
        let wanted: Vec<String> = paths.iter().map(|p| norm(p)).collect();
        let _turn = self.turn(TurnKind::Write).await?;
        let now = self.now();
        let (released, commits) = {
            let mut st = self.lock();
            if !st.peers.contains_key(&holder) {
                return Err(unknown_peer(holder));
            }
            self.prove_in(&st, holder, caller)?;
            let held: Vec<&Lease> = st
                .leases_of
                .get(&holder)
                .into_iter()
                .flatten()
                .filter_map(|id| st.leases.get(id))
                .map(|e| &e.lease)
                .filter(|l| repo.as_ref().is_none_or(|r| &l.repo == r))
                .collect();
            let chosen: Vec<Uuid> = held
                .iter()
                .filter(|l| wanted.is_empty() || l.paths.iter().any(|p| wanted.contains(&norm(p))))
                .map(|l| l.id)
                .collect();
            if chosen.is_empty() {
                let mine: Vec<String> = held.iter().map(|l| describe_lease(l)).collect();
                let mine = if mine.is_empty() {
                    "you hold no lease there".to_string()
                } else {
                    format!("you hold: {}", mine.join("; "))
                };
                return Err(BrokerError::new(
                    ErrorCode::UnknownLease,
                    format!(
                        "none of your held leases names {}; {mine}. Name a lease's paths exactly as taken, or its id",
                        paths.join(", ")
                    ),
                ));
            }
            let mut commits = Vec::new();
            let released: Vec<Lease> = chosen
                .into_iter()
                .filter_map(|id| {
                    self.end_lease(&mut st, id, LeaseStatus::Released, now, &mut commits)
                })
                .collect();
            (released, commits)
        };
        Broker::committed(commits).await?;
        Ok(released)
    }

    /// Ends every lease `holder` holds (it disconnected, went offline or is
    /// forgotten); called by the liveness rules in `peers.rs`, in their turn.
    pub(super) fn end_leases_of(
        &self,
        st: &mut State,
        holder: Uuid,
        now: Timestamp,
        commits: &mut Vec<Commit>,
    ) {
        self.end_leases_of_since(st, holder, None, now, commits);
    }

    /// Like [`Broker::end_leases_of`], only for leases taken before `before`
    /// (`None`: all): contact noticed on one node and settled later in a
    /// turn must not end a lease the peer took in between.
    pub(super) fn end_leases_of_since(
        &self,
        st: &mut State,
        holder: Uuid,
        before: Option<Timestamp>,
        now: Timestamp,
        commits: &mut Vec<Commit>,
    ) {
        let ids: Vec<Uuid> = st
            .leases_of
            .get(&holder)
            .into_iter()
            .flatten()
            .copied()
            .collect();
        for id in ids {
            let taken = st.leases.get(&id).map(|e| e.lease.created_at);
            if before.is_some_and(|b| taken.is_some_and(|t| t >= b)) {
                continue;
            }
            tracing::info!(lease = %id, peer = %holder, "lease released: its holder left");
            self.end_lease(st, id, LeaseStatus::Released, now, commits);
        }
    }

    /// Expiry pass of the sweeper: held leases past their ttl expire.
    pub(super) fn sweep_leases(&self, st: &mut State, now: Timestamp, commits: &mut Vec<Commit>) {
        while let Some(&(at, id)) = st.lease_expiry.first() {
            if at > now.millis() {
                break;
            }
            st.lease_expiry.remove(&(at, id));
            self.end_lease(st, id, LeaseStatus::Expired, now, commits);
        }
    }

    /// Ends lease `id` now if its ttl has passed and the sweeper has not
    /// seen to it yet, so a renew or release meets it as it really is.
    fn end_if_past(&self, st: &mut State, id: Uuid, now: Timestamp, commits: &mut Vec<Commit>) {
        let past = st
            .leases
            .get(&id)
            .is_some_and(|e| e.lease.status == LeaseStatus::Held && e.lease.expires_at <= now);
        if past {
            self.end_lease(st, id, LeaseStatus::Expired, now, commits);
        }
    }

    /// Ends a held lease with `status`; answers it (`None` when it is not
    /// held, which changes nothing).
    fn end_lease(
        &self,
        st: &mut State,
        id: Uuid,
        status: LeaseStatus,
        now: Timestamp,
        commits: &mut Vec<Commit>,
    ) -> Option<Lease> {
        let e = st
            .leases
            .get(&id)
            .filter(|e| e.lease.status == LeaseStatus::Held)?;
        let ttl = e.ttl;
        let mut lease = e.lease.clone();
        lease.status = status;
        lease.released_at = Some(now);
        self.lease_changed(st, lease.clone(), ttl, None, commits);
        Some(lease)
    }

    /// Stores a lease's new state: persisted, announced (a `lease` event),
    /// indexed, and ended ones kept up to the command retention.
    fn lease_changed(
        &self,
        st: &mut State,
        lease: Lease,
        ttl: u64,
        patterns: Option<Vec<PathPattern>>,
        commits: &mut Vec<Commit>,
    ) {
        commits.push(self.persist(Mutation::Lease(Box::new(StoredLease {
            lease: lease.clone(),
            ttl,
        }))));
        st.events.push("lease", &lease);
        st.put_lease(lease, ttl, patterns);
        while st.ended_leases.len() > self.inner.config.command_retention.max(1) {
            let Some(old) = st.ended_leases.pop_first() else {
                break;
            };
            st.forget_lease(old);
            commits.push(self.persist(Mutation::ForgetLease { id: old }));
        }
    }
}

/// A 409 for a lease that is no longer held (`doing`: what was refused).
fn ended(l: &Lease, doing: &str) -> Result<(), BrokerError> {
    if l.status == LeaseStatus::Held {
        return Ok(());
    }
    let at = l
        .released_at
        .map(|t| format!(" at {t}"))
        .unwrap_or_default();
    Err(BrokerError::new(
        ErrorCode::AlreadyFinished,
        format!(
            "lease {} was already {}{at}, so it cannot be {doing}; take a new lease (POST /leases) if you still need {}",
            l.id,
            l.status.as_str(),
            l.paths.join(", ")
        ),
    ))
}
