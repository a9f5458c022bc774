//! PostgreSQL for the tests: the throw-away server `.ci/start-postgres`
//! started (found through `CIPC_TEST_POSTGRES`), a fresh database per test,
//! and private clusters for the tests that restart PostgreSQL.
//!
//! Outside CI a missing server skips the PostgreSQL tests (through
//! [`super::skip`], with a line that says how to run them); under CI it
//! fails them.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The server URL from `CIPC_TEST_POSTGRES`, or `None` (after saying how to
/// get one) when it is not set outside CI. Panics under CI.
pub fn server_url() -> Option<String> {
    let url = server_url_quiet();
    if url.is_none() {
        super::skip(
            "this PostgreSQL test",
            "CIPC_TEST_POSTGRES is not set: no PostgreSQL (run: eval \"$(bash .ci/start-postgres)\" first; needs apt-get install postgresql; .ci/run does it)",
        );
    }
    url
}

/// `CIPC_TEST_POSTGRES`, if set, without skipping anything.
pub fn server_url_quiet() -> Option<String> {
    std::env::var("CIPC_TEST_POSTGRES")
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// `url` with its database name replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("a URL with a database");
    format!("{base}/{db}")
}

/// Creates an empty database on the test server and answers its URL
/// (`None` when there is no server, outside CI).
pub async fn fresh_database() -> Option<String> {
    let server = server_url()?;
    Some(create_database(&server).await)
}

/// Creates an empty database on `server` and answers its URL.
pub async fn create_database(server: &str) -> String {
    let name = format!("cipc_{}", uuid::Uuid::new_v4().simple());
    let (client, conn) = tokio_postgres::connect(server, tokio_postgres::NoTls)
        .await
        .expect("connect to the test PostgreSQL");
    let driver = tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create a test database");
    drop(client);
    let _ = driver.await;
    with_database(server, &name)
}

/// A PostgreSQL cluster of one test's own (for tests that stop and restart
/// PostgreSQL without disturbing the others), removed when dropped.
pub struct PrivateCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Extra server settings (`-c name=value`).
    settings: Vec<String>,
}

impl PrivateCluster {
    /// initdb and start one, with the binaries `CIPC_TEST_POSTGRES_BIN`
    /// names (`None` outside CI when they are not there; panics under CI).
    pub fn start() -> Option<PrivateCluster> {
        PrivateCluster::start_with(false)
    }

    /// Like [`PrivateCluster::start`], with TLS on: a CA of its own signs
    /// the server's certificate (for 127.0.0.1); answers the CA's PEM file.
    pub fn start_tls() -> Option<(PrivateCluster, PathBuf)> {
        let c = PrivateCluster::start_with(true)?;
        let ca = c.dir.path().join("ca.pem");
        Some((c, ca))
    }

    fn start_with(tls: bool) -> Option<PrivateCluster> {
        let bin = std::env::var_os("CIPC_TEST_POSTGRES_BIN")
            .map(PathBuf::from)
            .filter(|b| b.join("initdb").exists());
        let Some(bin) = bin else {
            super::skip(
                "this private-cluster PostgreSQL test",
                "CIPC_TEST_POSTGRES_BIN is not set: no PostgreSQL binaries (eval \"$(bash .ci/start-postgres)\" sets it)",
            );
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("cipc-pg-private")
            .tempdir()
            .expect("temp dir");
        let port = super::free_port();
        let mut cluster = PrivateCluster {
            bin,
            dir,
            port,
            settings: Vec::new(),
        };
        if tls {
            cluster.make_certificates();
            let d = cluster.dir.path().display().to_string();
            cluster.settings = vec![
                "ssl=on".into(),
                format!("ssl_cert_file={d}/server.pem"),
                format!("ssl_key_file={d}/server.key"),
            ];
        }
        cluster.chown();
        let data = cluster.data();
        cluster.run(
            "initdb",
            &["-D", &data, "-U", "postgres", "-A", "trust", "--no-sync"],
        );
        cluster.pg_ctl("start");
        Some(cluster)
    }

    /// Its URL, with database `postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops it (fast shutdown: sessions are cut, as in a crash of the server process).
    pub fn stop(&self) {
        self.pg_ctl("stop");
    }

    /// Starts it again after [`PrivateCluster::stop`].
    pub fn start_again(&self) {
        self.pg_ctl("start");
    }

    /// A CA, and a server certificate it signs for 127.0.0.1 (openssl).
    fn make_certificates(&self) {
        let d = self.dir.path();
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=cipc test CA",
        ]);
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        std::fs::write(
            d.join("san.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
        )
        .expect("write san.ext");
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ]);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.join("server.key"), std::fs::Permissions::from_mode(0o600))
            .expect("chmod server.key");
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn pg_ctl(&self, action: &str) {
        let data = self.data();
        let log = self.dir.path().join("server.log").display().to_string();
        let mut opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        for s in &self.settings {
            opts.push_str(" -c ");
            opts.push_str(s);
        }
        let mut args = vec!["-D", &data, "-l", &log, "-w", "-t", "60"];
        if action == "stop" {
            args.extend(["-m", "fast"]);
        } else {
            args.extend(["-o", &opts]);
        }
        args.push(action);
        self.run("pg_ctl", &args);
    }

    fn as_root() -> bool {
        #[allow(unsafe_code)] // geteuid(2) has no preconditions
        let uid = unsafe { libc::geteuid() };
        uid == 0
    }

    fn chown(&self) {
        if Self::as_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(self.dir.path())
                .status()
                .expect("chown")
                .success();
            assert!(ok, "chown the private cluster's directory to postgres");
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let mut cmd = if Self::as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd.args(args).output().expect("run a PostgreSQL tool");
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let data = self.data();
        let exe = self.bin.join("pg_ctl");
        let mut cmd = if Self::as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let _ = cmd
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// How long PostgreSQL-backed waits get in the tests before they count as lost.
pub const PATIENCE: Duration = Duration::from_secs(10);
