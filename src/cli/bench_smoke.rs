//! `cipc bench --smoke`: the CI-light run. Every row of the benchmark table,
//! briefly, on a memory and on a durable broker, each as a ratio to a floor
//! measured in the same run; it fails only when a ratio is more than twice
//! its bound, so a loaded 2-core CI machine passes and a 2x regression does
//! not. No absolute timings: a slow machine slows the floor too.
//!
//! The floors need nothing installed: `GET /healthz` on the same broker (the
//! HTTP floor), and one `fdatasync` in the temporary directory the durable
//! broker writes to (the disk floor). Each timed row is run three times and
//! judged by its best ratio, so one hiccup of a shared machine is not a
//! failure.

use super::bench::{range, BenchArgs, Row};
use super::bench_floor::fdatasync_median;
use super::bench_measure::{commits, commits_between, idle_waiters, ms, rate, round_trips, Load};
use super::exit;
use super::Exit;
use serde_json::json;
use std::time::Duration;

/// One row's bound: the ratio cipc reaches today on the 2-core development
/// machine, rounded (docs/benchmarks.md has the targets of issue 24 beside
/// them), in a release build and in a debug one (whose broker work is not
/// optimised, so its ratios are further from the floors); and whether the
/// ratio must stay below it or above.
struct Bound {
    release: f64,
    debug: f64,
    at_most: bool,
    unit: &'static str,
    /// How far past the bound fails: twice it for timings and memory; less
    /// for a count of commits, which a loaded machine barely moves.
    slack: f64,
}

impl Bound {
    fn value(&self) -> f64 {
        if cfg!(debug_assertions) {
            self.debug
        } else {
            self.release
        }
    }

    /// True when `ratio` is within the bound and its slack.
    fn passes(&self, ratio: f64) -> bool {
        if self.at_most {
            ratio <= self.slack * self.value()
        } else {
            ratio >= self.value() / self.slack
        }
    }

    fn describe(&self) -> String {
        let u = self.unit;
        let (cmp, fail) = if self.at_most {
            ("<=", format!("fails > {:.2}{u}", self.slack * self.value()))
        } else {
            (">=", format!("fails < {:.2}{u}", self.value() / self.slack))
        };
        format!("{cmp} {:.2}{u} ({fail})", self.value())
    }
}

/// Memory round trip over two no-op requests (issue 24's target: 1.3x).
const MEMORY_ROUND_TRIP: Bound = Bound {
    release: 1.7,
    debug: 2.2,
    at_most: true,
    unit: "x",
    slack: 2.0,
};
/// Durable round trip over two no-op requests plus the two fdatasyncs on
/// its path (the command with its delivery, the ack).
const DURABLE_ROUND_TRIP: Bound = Bound {
    release: 1.6,
    debug: 3.0,
    at_most: true,
    unit: "x",
    slack: 2.0,
};
/// Memory channel sends over `GET /healthz` at the same concurrency
/// (issue 24's target: 0.9x).
const MEMORY_SENDS: Bound = Bound {
    release: 0.7,
    debug: 0.85,
    at_most: false,
    unit: "x",
    slack: 2.0,
};
/// Durable channel sends over the lesser of the HTTP floor and the disk's
/// (every client's write covered by one fdatasync each): 0.33-0.5 on the
/// development VMs, lower where the disk syncs fast, since a commit covers
/// only the writes of the clients that came back in time.
const DURABLE_SENDS: Bound = Bound {
    release: 0.35,
    debug: 0.45,
    at_most: false,
    unit: "x",
    slack: 2.0,
};
/// Commits (syncs) per durable round trip: the command with its delivery,
/// then the ack. A third would mean the command was synced alone again
/// (docs/benchmarks.md says what each one protects).
const COMMITS_PER_ROUND_TRIP: Bound = Bound {
    release: 2.0,
    debug: 2.0,
    at_most: true,
    unit: "",
    slack: 1.25,
};
/// Channel sends one commit covers with `CLIENTS` senders: group commit.
/// One would mean every send waits for a sync of its own.
const SENDS_PER_COMMIT: Bound = Bound {
    release: 2.5,
    debug: 2.2,
    at_most: false,
    unit: "",
    slack: 2.0,
};
/// KB per parked long-poll (memory, not time; issue 24's target: 6 KB),
/// read once every waiter is parked and the memory has settled.
const WAITER_KB: Bound = Bound {
    release: 12.0,
    debug: 18.0,
    at_most: true,
    unit: " KB",
    slack: 2.0,
};

/// How much of each: a debug build serves a few thousand requests a
/// second, so it does less, to stay within seconds.
const fn scaled(release: usize) -> usize {
    if cfg!(debug_assertions) {
        release / 3
    } else {
        release
    }
}
const ROUND_TRIPS: usize = scaled(300);
const MESSAGES: usize = scaled(3000);
const CLIENTS: usize = 8;
const WAITERS: usize = 1000;
const FSYNCS: usize = 30;

/// Runs the smoke benchmark; exit 1 when a row fails.
pub(super) fn run(args: &BenchArgs, rt: &tokio::runtime::Runtime) -> Exit {
    let repeat = args.repeat.max(1);
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for memory in [true, false] {
        let label = if memory { "memory" } else { "durable" };
        let (mut child, _dir, url) = match super::bench::spawn_broker(memory) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("cipc bench: {e}");
                return exit::ERROR;
            }
        };
        let pid = child.id();
        let result = rt.block_on(async {
            let urls = vec![url.clone()];
            let mut out = Vec::new();
            let w = idle_waiters(&url, WAITERS, pid).await?;
            out.push(judge(
                format!("{label}: {WAITERS} parked long-polls, KB each"),
                &[w.per_waiter_kb()],
                "-".into(),
                &WAITER_KB,
            ));
            let (mut rt_ratio, mut rt_floor, mut rt_commits) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..repeat {
                let before = commits(&urls).await?;
                let r = round_trips(&url, &url, ROUND_TRIPS).await?;
                if let Some((each, _)) = commits_between(before, commits(&urls).await?, ROUND_TRIPS)
                {
                    rt_commits.push(each);
                }
                let floor = if memory {
                    r.noop_pair_p50
                } else {
                    r.noop_pair_p50 + 2 * fsync()?
                };
                rt_floor.push(ms(floor));
                rt_ratio.push(r.p50.as_secs_f64() / floor.as_secs_f64().max(1e-9));
            }
            let floor = if memory {
                "two GET /healthz"
            } else {
                "two GET /healthz + 2 fdatasync"
            };
            out.push(judge(
                format!("{label}: round trip p50 / floor"),
                &rt_ratio,
                format!("{floor}: {} ms", range(&rt_floor, |x| format!("{x:.3}"))),
                if memory {
                    &MEMORY_ROUND_TRIP
                } else {
                    &DURABLE_ROUND_TRIP
                },
            ));
            if !rt_commits.is_empty() {
                out.push(judge(
                    format!("{label}: commits per round trip"),
                    &rt_commits,
                    "-".into(),
                    &COMMITS_PER_ROUND_TRIP,
                ));
            }
            let (mut s_ratio, mut s_floor, mut s_batches) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..repeat {
                let http = rate(&urls, MESSAGES, CLIENTS, Load::Healthz).await?;
                let floor = if memory {
                    http
                } else {
                    http.min(CLIENTS as f64 / fsync()?.as_secs_f64().max(1e-9))
                };
                let before = commits(&urls).await?;
                let sends = rate(&urls, MESSAGES, CLIENTS, Load::ChannelSend).await?;
                if let Some((_, per_commit)) =
                    commits_between(before, commits(&urls).await?, MESSAGES)
                {
                    s_batches.push(per_commit);
                }
                s_floor.push(floor);
                s_ratio.push(sends / floor.max(1e-9));
            }
            let floor = if memory {
                "GET /healthz"
            } else {
                "min(GET /healthz, clients per fdatasync)"
            };
            out.push(judge(
                format!("{label}: channel sends/s / floor, {CLIENTS} clients"),
                &s_ratio,
                format!("{floor}: {}/s", range(&s_floor, |x| format!("{x:.0}"))),
                if memory {
                    &MEMORY_SENDS
                } else {
                    &DURABLE_SENDS
                },
            ));
            if !s_batches.is_empty() {
                out.push(judge(
                    format!("{label}: channel sends per commit, {CLIENTS} clients"),
                    &s_batches,
                    "-".into(),
                    &SENDS_PER_COMMIT,
                ));
            }
            Ok::<_, String>(out)
        });
        let _ = child.kill();
        let _ = child.wait();
        match result {
            Ok(out) => {
                for (row, ok) in out {
                    if !ok {
                        failed.push(row.name.clone());
                    }
                    rows.push(row);
                }
            }
            Err(e) => {
                eprintln!("cipc bench: {e}");
                return exit::ERROR;
            }
        }
    }
    super::bench::print_rows(&rows, "smoke (fails only well past a bound)", args.json);
    if failed.is_empty() {
        exit::OK
    } else {
        eprintln!(
            "cipc bench --smoke: more than twice the bound: {}",
            failed.join("; ")
        );
        exit::ERROR
    }
}

/// The disk floor: one fdatasync where the durable broker writes.
fn fsync() -> Result<Duration, String> {
    fdatasync_median(&std::env::temp_dir(), FSYNCS)
}

/// A row for `values` (ratios, or KB for the waiters), judged by the best.
fn judge(name: String, values: &[f64], floor: String, bound: &Bound) -> (Row, bool) {
    let best = if bound.at_most {
        values.iter().copied().fold(f64::INFINITY, f64::min)
    } else {
        values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    };
    let ok = bound.passes(best);
    let shown = range(values, |x| format!("{x:.2}"));
    (
        Row {
            name,
            value: if ok {
                format!("{shown} (best {best:.2}): ok")
            } else {
                format!("{shown} (best {best:.2}): FAILED")
            },
            ratio: format!("{best:.2}"),
            floor,
            target: bound.describe(),
            raw: json!({"values": values, "best": best, "bound": bound.value(), "passed": ok}),
        },
        ok,
    )
}
