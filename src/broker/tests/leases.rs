//! Leases: granted all or nothing, never against another peer's
//! overlapping lease (unless both are shared), ended at their ttl exactly,
//! when their holder leaves, or when released by their holder or a person;
//! and two nodes never grant conflicting ones.

use super::*;
use crate::api::{Lease, LeaseRequest, LeaseStatus, DEFAULT_LEASE_TTL_MS};
use crate::store::shared_memory::SharedMemory;

const REPO: &str = "github.com/acme/shop";

fn req(paths: &[&str]) -> LeaseRequest {
    LeaseRequest {
        paths: paths.iter().map(|p| (*p).to_string()).collect(),
        repo: Some(REPO.into()),
        ..LeaseRequest::default()
    }
}

fn shared(paths: &[&str]) -> LeaseRequest {
    LeaseRequest {
        exclusive: Some(false),
        ..req(paths)
    }
}

async fn lease(b: &Broker, peer: Uuid, r: LeaseRequest) -> Result<Lease, BrokerError> {
    b.acquire_lease(r, &as_peer(peer)).await
}

async fn held(b: &Broker, peer: Uuid, paths: &[&str]) -> Lease {
    lease(b, peer, req(paths)).await.expect("lease")
}

fn status_of(b: &Broker, id: Uuid) -> LeaseStatus {
    b.lease(id).expect("lease").status
}

#[tokio::test]
async fn a_conflicting_request_takes_nothing_and_names_the_lease_in_the_way() {
    let (b, _clock) = broker_at(BrokerConfig::default());
    let ana = connect(&b, "backend").await;
    let bob = connect(&b, "frontend").await;
    let db = held(&b, ana, &["src/db/"]).await;
    assert_eq!(
        (db.status, db.exclusive, db.holder_role.as_str()),
        (LeaseStatus::Held, true, "backend")
    );
    let e = lease(&b, bob, req(&["docs/a.md", "src/db/x.sql"]))
        .await
        .expect_err("src/db/x.sql is below ana's src/db/");
    assert_eq!(e.code, ErrorCode::LeaseConflict);
    assert_eq!(e.conflicts, vec![db.clone()]);
    assert!(e.message.contains("src/db/x.sql"), "{}", e.message);
    assert!(!e.message.contains("docs/a.md"), "{}", e.message);
    assert!(e.message.contains("backend"), "{}", e.message);
    assert!(
        b.leases(None, Some(bob)).await.is_empty(),
        "all or nothing: docs/a.md was not leased either"
    );
    held(&b, bob, &["docs/a.md"]).await;
    // Another repo is another code base.
    lease(
        &b,
        bob,
        LeaseRequest {
            repo: Some("github.com/acme/other".into()),
            ..req(&["src/db/x.sql"])
        },
    )
    .await
    .expect("another repo");
    assert_eq!(b.leases(Some(REPO), None).await.len(), 2);
}

#[tokio::test]
async fn a_holder_never_conflicts_with_itself_and_shared_leases_only_with_exclusive_ones() {
    let (b, _clock) = broker_at(BrokerConfig::default());
    let ana = connect(&b, "backend").await;
    let bob = connect(&b, "frontend").await;
    held(&b, ana, &["src/"]).await;
    held(&b, ana, &["src/db/x.sql"]).await;
    let e = lease(&b, bob, shared(&["src/a.rs"]))
        .await
        .expect_err("shared against exclusive");
    assert_eq!(e.code, ErrorCode::LeaseConflict);
    let docs = lease(&b, ana, shared(&["docs/"])).await.expect("shared");
    lease(&b, bob, shared(&["docs/**/*.md"]))
        .await
        .expect("shared with shared");
    let e = lease(&b, bob, req(&["docs/x.md"]))
        .await
        .expect_err("exclusive against shared");
    assert!(e.conflicts.iter().any(|l| l.id == docs.id), "{e:?}");
}

#[tokio::test]
async fn a_lease_expires_exactly_at_its_ttl() {
    let (b, clock) = broker_at(BrokerConfig::default());
    let ana = connect(&b, "backend").await;
    let bob = connect(&b, "frontend").await;
    let mut events = b.subscribe_events(None);
    let l = lease(
        &b,
        ana,
        LeaseRequest {
            ttl: Some(10_000),
            ..req(&["src/a.rs"])
        },
    )
    .await
    .expect("lease");
    assert_eq!(l.expires_at.millis() - l.created_at.millis(), 10_000);
    advance_ms(&b, &clock, 9_999);
    assert_eq!(status_of(&b, l.id), LeaseStatus::Held);
    advance_ms(&b, &clock, 1);
    let ended = b.lease(l.id).expect("kept");
    assert_eq!(ended.status, LeaseStatus::Expired);
    assert!(ended.released_at.is_some());
    assert!(b.leases(None, None).await.is_empty());
    held(&b, bob, &["src/a.rs"]).await;
    let kinds: Vec<(&str, String)> = std::iter::from_fn(|| events.live.try_recv().ok())
        .filter(|e| e.kind == "lease")
        .map(|e| {
            let v: serde_json::Value = serde_json::from_str(&e.data).expect("json");
            (e.kind, v["status"].as_str().unwrap_or_default().to_string())
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("lease", "held".into()),
            ("lease", "expired".into()),
            ("lease", "held".into())
        ]
    );
}

#[tokio::test]
async fn a_lease_ends_when_its_holder_disconnects_or_goes_offline() {
    let (b, clock) = broker_at(BrokerConfig {
        stale_after: Duration::from_secs(10),
        offline_after: Duration::from_secs(60),
        ..BrokerConfig::default()
    });
    let ana = connect(&b, "backend").await;
    let bob = connect(&b, "frontend").await;
    let first = held(&b, ana, &["src/a.rs"]).await;
    b.disconnect(ana, &Caller::default())
        .await
        .expect("disconnect");
    assert_eq!(status_of(&b, first.id), LeaseStatus::Released);
    held(&b, bob, &["src/a.rs"]).await;

    // Taking a lease is contact: the disconnected peer is back online.
    let second = held(&b, ana, &["src/b.rs"]).await;
    assert_eq!(status(&b, ana), PeerStatus::Online);
    advance_ms(&b, &clock, 59_999);
    assert_eq!(
        status_of(&b, second.id),
        LeaseStatus::Held,
        "stale keeps it"
    );
    advance_ms(&b, &clock, 1);
    assert_eq!(status(&b, ana), PeerStatus::Offline);
    assert_eq!(status_of(&b, second.id), LeaseStatus::Released);
}

#[tokio::test]
async fn a_lease_ends_when_its_holder_is_forgotten() {
    let (b, clock) = broker_at(BrokerConfig {
        stale_after: Duration::from_secs(10),
        offline_after: Duration::from_secs(60),
        forget_after: Duration::from_secs(120),
        ..BrokerConfig::default()
    });
    let ana = connect(&b, "backend").await;
    let l = held(&b, ana, &["src/a.rs"]).await;
    clock.advance(Duration::from_secs(200));
    b.sweep();
    advance_ms(&b, &clock, 1);
    assert!(b.peer(ana).is_err(), "forgotten");
    assert_eq!(status_of(&b, l.id), LeaseStatus::Released);
}

#[tokio::test]
async fn only_the_holder_renews_and_a_person_or_the_holder_releases() {
    let (b, clock) = broker_at(BrokerConfig::default());
    let ana = connect(&b, "backend").await;
    let bob = connect(&b, "frontend").await;
    let l = lease(
        &b,
        ana,
        LeaseRequest {
            ttl: Some(60_000),
            ..req(&["src/a.rs"])
        },
    )
    .await
    .expect("lease");
    clock.advance(Duration::from_secs(50));
    let e = b
        .renew_lease(l.id, None, &as_peer(bob))
        .await
        .expect_err("not bob's");
    assert_eq!(e.code, ErrorCode::NotLeaseHolder);
    let e = b
        .renew_lease(l.id, None, &Caller::default())
        .await
        .expect_err("a person does not renew");
    assert_eq!(e.code, ErrorCode::NotLeaseHolder);
    let renewed = b
        .renew_lease(l.id, None, &as_peer(ana))
        .await
        .expect("renew");
    assert_eq!(
        renewed.expires_at.millis(),
        l.created_at.millis() + 50_000 + 60_000,
        "the same ttl again, from now"
    );
    let e = b
        .renew_lease(l.id, Some(999), &as_peer(ana))
        .await
        .expect_err("under 1 s");
    assert_eq!(e.code, ErrorCode::InvalidLease);
    let longer = b
        .renew_lease(l.id, Some(3_600_000), &as_peer(ana))
        .await
        .expect("renew for an hour");
    assert_eq!(longer.expires_at.millis(), clock_now(&clock) + 3_600_000);

    let e = b
        .release_lease(l.id, &as_peer(bob))
        .await
        .expect_err("another peer");
    assert_eq!(e.code, ErrorCode::NotLeaseHolder);
    assert!(e.message.contains("dashboard"), "{}", e.message);
    let gone = b
        .release_lease(l.id, &Caller::default())
        .await
        .expect("a person releases");
    assert_eq!(gone.status, LeaseStatus::Released);
    let e = b
        .release_lease(l.id, &as_peer(ana))
        .await
        .expect_err("twice");
    assert_eq!(e.code, ErrorCode::AlreadyFinished);
    let e = b
        .renew_lease(l.id, None, &as_peer(ana))
        .await
        .expect_err("ended");
    assert_eq!(e.code, ErrorCode::AlreadyFinished);
    let mine = held(&b, ana, &["src/b.rs"]).await;
    b.release_lease(mine.id, &as_peer(ana))
        .await
        .expect("the holder releases");
    let e = b
        .release_lease(Uuid::now_v7(), &Caller::default())
        .await
        .expect_err("unknown");
    assert_eq!(e.code, ErrorCode::UnknownLease);
}

fn clock_now(clock: &clock::ManualClock) -> i64 {
    use clock::Clock;
    clock.now().millis()
}

#[tokio::test]
async fn a_renewal_after_the_ttl_is_refused_even_before_the_sweeper_runs() {
    let (b, clock) = broker_at(BrokerConfig::default());
    let ana = connect(&b, "backend").await;
    let l = lease(
        &b,
        ana,
        LeaseRequest {
            ttl: Some(1_000),
            ..req(&["src/a.rs"])
        },
    )
    .await
    .expect("lease");
    clock.advance(Duration::from_millis(1_000));
    let e = b
        .renew_lease(l.id, None, &as_peer(ana))
        .await
        .expect_err("expired");
    assert_eq!(e.code, ErrorCode::AlreadyFinished);
    assert_eq!(status_of(&b, l.id), LeaseStatus::Expired);
}

#[tokio::test]
async fn check_names_other_peers_leases_covering_each_path() {
    let (b, _clock) = broker_at(BrokerConfig::default());
    let ana = connect(&b, "backend").await;
    let bob = connect(&b, "frontend").await;
    let db = held(&b, ana, &["src/db/"]).await;
    let docs = lease(&b, bob, shared(&["docs/**/*.md"]))
        .await
        .expect("docs");
    let paths: Vec<String> = ["src/db/x.sql", "docs/guide/a.md", "README.md"]
        .map(String::from)
        .to_vec();
    let seen = b
        .check_leases(Some(REPO), &paths, &as_peer(bob))
        .await
        .expect("check");
    let pairs: Vec<(&str, Uuid)> = seen.iter().map(|c| (c.path.as_str(), c.lease.id)).collect();
    assert_eq!(pairs, [("src/db/x.sql", db.id)], "bob's own do not count");
    let anyone = b
        .check_leases(Some(REPO), &paths, &Caller::default())
        .await
        .expect("check");
    assert_eq!(anyone.len(), 2);
    assert_eq!(anyone[1].lease.id, docs.id);
    let e = b
        .check_leases(None, &paths, &Caller::default())
        .await
        .expect_err("no repo");
    assert_eq!(e.code, ErrorCode::InvalidLease);
    assert!(e.message.contains("repo"), "{}", e.message);
}

#[tokio::test]
async fn a_shared_lease_counts_at_a_check_unless_the_caller_shares_the_path() {
    let (b, _clock) = broker_at(BrokerConfig::default());
    let ana = connect(&b, "backend").await;
    let bob = connect(&b, "frontend").await;
    let carol = connect(&b, "docs").await;
    let anas = lease(&b, ana, shared(&["docs/"])).await.expect("ana docs/");
    let bobs = lease(&b, bob, shared(&["docs/"])).await.expect("bob docs/");
    lease(&b, carol, shared(&["docs/guide/"]))
        .await
        .expect("carol docs/guide/");
    let check = |who: Caller, paths: &[&str]| {
        let b = &b;
        let paths: Vec<String> = paths.iter().map(|p| (*p).to_string()).collect();
        async move {
            let seen = b
                .check_leases(Some(REPO), &paths, &who)
                .await
                .expect("check");
            seen.iter()
                .map(|c| (c.path.clone(), c.lease.id))
                .collect::<Vec<_>>()
        }
    };
    let pair = |p: &str, l: &Lease| (p.to_string(), l.id);

    // Two sessions holding docs/ shared may both edit in it.
    assert_eq!(check(as_peer(bob), &["docs/a.md"]).await, []);
    assert_eq!(
        check(as_peer(ana), &["docs/a.md", "docs/**/*.md"]).await,
        []
    );
    // Carol shares docs/guide/ only: elsewhere in docs/ theirs count.
    assert_eq!(check(as_peer(carol), &["docs/guide/x.md"]).await, []);
    assert_eq!(
        check(as_peer(carol), &["docs/a.md"]).await,
        [pair("docs/a.md", &anas), pair("docs/a.md", &bobs)]
    );
    // A person, and a peer holding nothing, share nothing.
    let stranger = connect(&b, "ops").await;
    for who in [Caller::default(), as_peer(stranger)] {
        assert_eq!(check(who, &["docs/a.md"]).await.len(), 2);
    }

    // Another's exclusive lease counts even on a path the caller holds:
    // src/* and src/db/*.rs as granted before they conflicted.
    let dbs = lease(&b, bob, req(&["src/db/*.rs"])).await.expect("bob db");
    let mut wide = held(&b, ana, &["src/api/"]).await;
    wide.paths = vec!["src/*".into()];
    {
        let mut st = b.lock();
        st.forget_lease(wide.id);
        st.put_lease(wide.clone(), DEFAULT_LEASE_TTL_MS, None);
    }
    assert_eq!(
        check(as_peer(bob), &["src/db/x.rs"]).await,
        [pair("src/db/x.rs", &wide)]
    );
    assert_eq!(
        check(as_peer(ana), &["src/db/x.rs"]).await,
        [pair("src/db/x.rs", &dbs)]
    );
}

#[tokio::test]
async fn bad_requests_are_refused_with_what_to_do() {
    let (b, _clock) = broker_at(BrokerConfig::default());
    let ana = connect(&b, "backend").await;
    let cases: Vec<(LeaseRequest, &str)> = vec![
        (req(&[]), "1-100 paths"),
        (req(&vec!["a"; 101]), "1-100 paths"),
        (req(&["/etc/passwd"]), "absolute"),
        (req(&["src/../../x"]), ".."),
        (
            LeaseRequest {
                repo: None,
                ..req(&["a"])
            },
            "repo is missing",
        ),
        (
            LeaseRequest {
                repo: Some("x".repeat(513)),
                ..req(&["a"])
            },
            "at most 512",
        ),
        (
            LeaseRequest {
                ttl: Some(999),
                ..req(&["a"])
            },
            "1 s",
        ),
        (
            LeaseRequest {
                ttl: Some(24 * 3600 * 1000 + 1),
                ..req(&["a"])
            },
            "24 h",
        ),
        (
            LeaseRequest {
                reason: Some("r".repeat(501)),
                ..req(&["a"])
            },
            "at most 500",
        ),
    ];
    for (r, word) in cases {
        let e = lease(&b, ana, r.clone()).await.expect_err(word);
        assert_eq!(e.code, ErrorCode::InvalidLease, "{r:?}");
        assert!(e.message.contains(word), "{word}: {}", e.message);
    }
    let e = b
        .acquire_lease(req(&["a"]), &Caller::default())
        .await
        .expect_err("nobody");
    assert_eq!(e.code, ErrorCode::NotRegistered);
    let e = lease(&b, Uuid::now_v7(), req(&["a"]))
        .await
        .expect_err("unknown peer");
    assert_eq!(e.code, ErrorCode::UnknownPeer);
    assert!(b.leases(None, None).await.is_empty());
}

#[tokio::test]
async fn the_broker_keeps_at_most_max_leases_held() {
    let (b, _clock) = broker_at(BrokerConfig {
        max_leases: 2,
        ..BrokerConfig::default()
    });
    let ana = connect(&b, "backend").await;
    let one = held(&b, ana, &["a"]).await;
    held(&b, ana, &["b"]).await;
    let e = lease(&b, ana, req(&["c"])).await.expect_err("cap");
    assert_eq!(e.code, ErrorCode::TooManyLeases);
    b.release_lease(one.id, &as_peer(ana))
        .await
        .expect("release");
    held(&b, ana, &["c"]).await;
}

#[tokio::test]
async fn ended_leases_are_kept_up_to_the_retention() {
    let (b, _clock) = broker_at(BrokerConfig {
        command_retention: 2,
        ..BrokerConfig::default()
    });
    let ana = connect(&b, "backend").await;
    let mut ids = Vec::new();
    for p in ["a", "b", "c"] {
        let l = held(&b, ana, &[p]).await;
        b.release_lease(l.id, &as_peer(ana)).await.expect("release");
        ids.push(l.id);
    }
    assert!(
        b.lease(ids[0]).is_err(),
        "the oldest ended one is forgotten"
    );
    assert!(b.lease(ids[2]).is_ok());
}

#[tokio::test]
async fn release_by_paths_ends_the_callers_matching_leases_only() {
    let (b, _clock) = broker_at(BrokerConfig::default());
    let ana = connect(&b, "backend").await;
    let bob = connect(&b, "frontend").await;
    let db = held(&b, ana, &["src/db/", "migrations/"]).await;
    let api = held(&b, ana, &["src/api.rs"]).await;
    let theirs = held(&b, bob, &["docs/"]).await;
    let gone = b
        .release_leases_of(Some(REPO), &["src/db".to_string()], &as_peer(ana))
        .await
        .expect("release");
    assert_eq!(gone.iter().map(|l| l.id).collect::<Vec<_>>(), [db.id]);
    let e = b
        .release_leases_of(Some(REPO), &["docs/".to_string()], &as_peer(ana))
        .await
        .expect_err("not ana's");
    assert_eq!(e.code, ErrorCode::UnknownLease);
    assert!(e.message.contains("src/api.rs"), "{}", e.message);
    assert_eq!(status_of(&b, theirs.id), LeaseStatus::Held);
    let all = b
        .release_leases_of(None, &[], &as_peer(ana))
        .await
        .expect("all of ana's");
    assert_eq!(all.iter().map(|l| l.id).collect::<Vec<_>>(), [api.id]);
}

/// Two nodes (`a`, `b`) of one broker on one clock.
fn two_nodes() -> (Broker, Broker) {
    let clock = Arc::new(clock::ManualClock::new(Timestamp(1_800_000_000_000)));
    let log = SharedMemory::new();
    let open = |name: &str| {
        Broker::open_with_clock(
            Arc::new(log.node(name)),
            BrokerConfig::default(),
            clock.clone(),
        )
        .expect("open")
    };
    (open("a"), open("b"))
}

#[tokio::test]
async fn two_nodes_never_grant_conflicting_leases() {
    let (a, b) = two_nodes();
    let ana = connect(&a, "backend").await;
    let bob = connect(&b, "frontend").await;
    let l = held(&a, ana, &["src/db/"]).await;
    let e = lease(&b, bob, req(&["src/db/x.sql"]))
        .await
        .expect_err("granted on a");
    assert_eq!(e.conflicts, vec![l.clone()]);
    assert_eq!(b.leases(None, None).await, vec![l.clone()]);
    let seen = b
        .check_leases(Some(REPO), &["src/db/y.sql".into()], &as_peer(bob))
        .await
        .expect("check");
    assert_eq!(seen.len(), 1);
    a.release_lease(l.id, &Caller::default())
        .await
        .expect("release on a");
    held(&b, bob, &["src/db/x.sql"]).await;

    // Racing requests on both nodes: exactly one is granted.
    let cleo = connect(&a, "qa").await;
    let dan = connect(&b, "ops").await;
    let (x, y) = tokio::join!(
        lease(&a, cleo, req(&["tests/"])),
        lease(&b, dan, req(&["tests/e2e.rs"]))
    );
    assert!(x.is_ok() != y.is_ok(), "{x:?} / {y:?}");
    assert_eq!(a.leases(None, None).await.len(), 2);
}
