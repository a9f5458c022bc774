//! TLS to PostgreSQL (`--store postgres://...?sslmode=require`): used only
//! when the URL asks for it, and then the server's certificate is verified,
//! against the system's roots and `sslrootcert=FILE`. Runs against a private
//! cluster with TLS on and a CA of its own (needs `CIPC_TEST_POSTGRES_BIN`
//! and openssl; outside CI, without them, it returns early).

mod common;

use common::postgres::{create_database, PrivateCluster};
use common::{post, BinaryBroker};
use std::process::Command;

/// Whether the broker's connections to the database at `url` use TLS, as
/// PostgreSQL itself reports them.
async fn broker_uses_tls(url: &str) -> Vec<bool> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to look");
    let driver = tokio::spawn(conn);
    let rows = client
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = 'cipc'",
            &[],
        )
        .await
        .expect("pg_stat_ssl");
    drop(client);
    let _ = driver.await;
    rows.iter().map(|r| r.get(0)).collect()
}

#[tokio::test]
async fn tls_is_used_when_asked_and_the_server_certificate_is_verified() {
    let Some((cluster, ca)) = PrivateCluster::start_tls() else {
        return;
    };
    let db = create_database(&cluster.url()).await;
    let ca = ca.display().to_string();

    // Asked for, with the CA that signed the server's certificate: TLS.
    let node = BinaryBroker::start(
        &["--store", &format!("{db}?sslmode=require&sslrootcert={ca}")],
        &[],
    );
    let (status, body) = post(
        &format!("{}/channels/tls/send", node.url),
        serde_json::json!({"data": "over TLS"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let seen = broker_uses_tls(&db).await;
    assert!(
        !seen.is_empty() && seen.iter().all(|s| *s),
        "TLS connections: {seen:?}"
    );
    drop(node);

    // Asked for, but nothing vouches for the server's certificate: refused,
    // saying why (never a silent fallback to an unverified connection).
    let out = Command::new(env!("CARGO_BIN_EXE_cipc"))
        .args(["serve", "--port", "0", "--store"])
        .arg(format!("{db}?sslmode=require"))
        .output()
        .expect("run cipc serve");
    assert!(!out.status.success(), "started with an unverified server");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("certificate"), "{err}");

    // Not asked for: a plain connection, as before.
    let node = BinaryBroker::start(&["--store", &db], &[]);
    let (status, _) = post(
        &format!("{}/channels/tls/send", node.url),
        serde_json::json!({"data": "plain"}),
    )
    .await;
    assert_eq!(status, 201);
    let seen = broker_uses_tls(&db).await;
    assert!(
        !seen.is_empty() && seen.iter().all(|s| !*s),
        "plain connections: {seen:?}"
    );
}
