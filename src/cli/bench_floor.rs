//! The floors `cipc bench` measures beside cipc in the same run: what the
//! same work costs without cipc's rules, so every figure reads as a ratio
//! that survives a slower machine or a busy one.
//!
//! - `GET /healthz` on the same broker: the HTTP floor (no state, no store).
//! - Redis with `appendonly yes`, `appendfsync always` (when `redis-server`
//!   is installed): a durable peer on the same disk that also fsyncs before
//!   answering. It is driven over raw RESP from the same runtime, so the
//!   client side costs about what reqwest costs cipc, or less.
//! - One `fdatasync` of a small overwrite in the broker's data directory:
//!   the disk floor, for the smoke run where Redis may be missing.

use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A throw-away `redis-server` with `appendfsync always` in a temporary
/// directory; killed and removed on drop.
pub(super) struct Redis {
    child: Child,
    dir: std::path::PathBuf,
    /// Its port on 127.0.0.1.
    pub(super) port: u16,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Redis {
    /// Starts one if `redis-server` is on the PATH; `None` (with why) if not.
    pub(super) async fn start() -> Result<Redis, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let dir = std::env::temp_dir().join(format!("cipc-bench-redis-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .args([
                "--save",
                "",
                "--maxclients",
                "20000",
                "--protected-mode",
                "no",
            ])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("redis-server not started ({e}); install it for the Redis floor")
            })?;
        let redis = Redis { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut c) = Resp::connect(port).await {
                if c.call(&[b"PING"]).await.is_ok() {
                    return Ok(redis);
                }
            }
            if Instant::now() > deadline {
                return Err("redis-server did not answer PING within 10 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// One RESP connection: commands out, one reply in (its raw bytes).
pub(super) struct Resp {
    io: BufReader<TcpStream>,
    out: Vec<u8>,
}

impl Resp {
    pub(super) async fn connect(port: u16) -> std::io::Result<Resp> {
        let s = TcpStream::connect(("127.0.0.1", port)).await?;
        s.set_nodelay(true)?;
        Ok(Resp {
            io: BufReader::new(s),
            out: Vec::with_capacity(256),
        })
    }

    /// Sends one command and reads its whole reply; an error reply is an `Err`.
    pub(super) async fn call(&mut self, args: &[&[u8]]) -> Result<(), String> {
        self.out.clear();
        let _ = write!(self.out, "*{}\r\n", args.len());
        for a in args {
            let _ = write!(self.out, "${}\r\n", a.len());
            self.out.extend_from_slice(a);
            self.out.extend_from_slice(b"\r\n");
        }
        self.io
            .get_mut()
            .write_all(&self.out)
            .await
            .map_err(|e| e.to_string())?;
        self.reply().await
    }

    /// Reads one reply (arrays recursively), discarding it.
    async fn reply(&mut self) -> Result<(), String> {
        let mut pending = 1usize;
        let mut line = String::new();
        while pending > 0 {
            pending -= 1;
            line.clear();
            self.io
                .read_line(&mut line)
                .await
                .map_err(|e| e.to_string())?;
            let (kind, rest) = line
                .split_at_checked(1)
                .ok_or("redis closed the connection")?;
            let n: i64 = rest.trim_end().parse().unwrap_or(0);
            match kind {
                "-" => return Err(format!("redis: {}", rest.trim_end())),
                "$" if n >= 0 => {
                    let mut skip = vec![0u8; n as usize + 2];
                    self.io
                        .read_exact(&mut skip)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                "*" if n > 0 => pending += n as usize,
                _ => {}
            }
        }
        Ok(())
    }
}

/// `XADD` from `clients` connections, `n` in all: entries per second.
pub(super) async fn redis_xadd_rate(port: u16, n: usize, clients: usize) -> Result<f64, String> {
    let per = n / clients.max(1);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..clients.max(1) {
        tasks.push(tokio::spawn(async move {
            let mut c = Resp::connect(port).await.map_err(|e| e.to_string())?;
            let stream = format!("bench-{}", i % 4);
            for j in 0..per {
                let body = format!("{{\"client\":{i},\"n\":{j}}}");
                c.call(&[b"XADD", stream.as_bytes(), b"*", b"data", body.as_bytes()])
                    .await?;
            }
            Ok::<(), String>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    Ok((per * clients.max(1)) as f64 / t.elapsed().as_secs_f64())
}

/// Two parties over two lists, the way a request-reply over Redis goes:
/// the sender `RPUSH`es a request and `BLPOP`s the reply; the worker
/// `BLPOP`s the request and `RPUSH`es the reply. Each round trip's time.
pub(super) async fn redis_round_trips(port: u16, n: usize) -> Result<Vec<Duration>, String> {
    let mut worker = Resp::connect(port).await.map_err(|e| e.to_string())?;
    let serve = tokio::spawn(async move {
        for _ in 0..n {
            worker.call(&[b"BLPOP", b"bench-req", b"10"]).await?;
            worker
                .call(&[b"RPUSH", b"bench-rep", b"{\"ok\":true}"])
                .await?;
        }
        Ok::<(), String>(())
    });
    let mut c = Resp::connect(port).await.map_err(|e| e.to_string())?;
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        c.call(&[b"RPUSH", b"bench-req", b"{\"action\":\"ping\"}"])
            .await?;
        c.call(&[b"BLPOP", b"bench-rep", b"10"]).await?;
        times.push(t.elapsed());
    }
    serve.await.map_err(|e| e.to_string())??;
    Ok(times)
}

/// The median time of one `fdatasync` after overwriting 4 KiB of a file in
/// `dir` (a WAL in steady state is overwritten, not grown).
pub(super) fn fdatasync_median(dir: &std::path::Path, n: usize) -> Result<Duration, String> {
    use std::os::unix::fs::FileExt;
    let path = dir.join(format!("cipc-bench-fsync-{}", std::process::id()));
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| e.to_string())?;
    let page = [7u8; 4096];
    let run = || -> std::io::Result<Vec<Duration>> {
        for i in 0..16u64 {
            f.write_all_at(&page, i * 4096)?;
        }
        f.sync_all()?;
        let mut times = Vec::with_capacity(n);
        for i in 0..n as u64 {
            f.write_all_at(&page, (i % 16) * 4096)?;
            let t = Instant::now();
            f.sync_data()?;
            times.push(t.elapsed());
        }
        Ok(times)
    };
    let times = run();
    let _ = std::fs::remove_file(&path);
    let mut times = times.map_err(|e| e.to_string())?;
    times.sort();
    Ok(times[times.len() / 2])
}
