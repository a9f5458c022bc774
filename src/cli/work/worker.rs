//! The worker's loop: it keeps one take in flight while a slot is free,
//! runs a handler per command taken, acks what finished (riding the next
//! take when it can), beats while busy, and stops on SIGINT/SIGTERM. Its
//! tasks report back over one channel of [`Event`]s, so all state lives in
//! [`Worker`] and only the loop changes it.

use super::handler::{run_handler, Outcome, Spec};
use super::orders::{plain_ack, take};
use super::peer::Shared;
use crate::api::{AckRequest, Command};
use crate::cli::output::{human_duration, Output};
use crate::cli::{exit, CliError, Exit};
use serde_json::json;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

/// How often a busy worker (no long-poll open) tells the broker it is alive.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(30);
/// On a forced stop, how long acks already under way may take.
const FORCED_ACK_GRACE: Duration = Duration::from_secs(3);

/// What the worker's tasks tell its loop.
pub(super) enum Event {
    /// A take delivered a command.
    Took {
        /// Which take it was, so a stale one does not clear the current.
        generation: u64,
        /// The command to run.
        command: Box<Command>,
    },
    /// A take hit an error that retrying does not fix.
    TakeFailed {
        /// Which take it was, so a stale one does not clear the current.
        generation: u64,
        /// Why, which becomes the worker's exit.
        error: CliError,
    },
    /// A handler ended.
    Finished {
        /// The command it ran.
        command: Box<Command>,
        /// How it went.
        outcome: Outcome,
        /// How long it ran, for the line printed.
        elapsed: Duration,
    },
    /// An ack is settled: `error` says why it did not land as asked.
    Acked {
        /// The command acked.
        id: Uuid,
        /// Why the ack did not land as asked, if it did not.
        error: Option<String>,
    },
}

/// How the worker's tasks reach its loop.
pub(super) type Tx = mpsc::UnboundedSender<Event>;

/// SIGINT and SIGTERM, caught for the whole run.
pub(super) struct Signals {
    /// SIGINT (Ctrl-C).
    int: Signal,
    /// SIGTERM.
    term: Signal,
}

impl Signals {
    /// Catches both signals from now on, so none is lost (and the default,
    /// dying at once, never applies).
    pub(super) fn new() -> Result<Signals, CliError> {
        let catch = |kind: SignalKind| {
            signal(kind).map_err(|e| CliError::error(format!("cannot catch signals: {e}")))
        };
        Ok(Signals {
            int: catch(SignalKind::interrupt())?,
            term: catch(SignalKind::terminate())?,
        })
    }

    /// The next signal's number.
    pub(super) async fn next(&mut self) -> i32 {
        tokio::select! {
            _ = self.int.recv() => libc::SIGINT,
            _ = self.term.recv() => libc::SIGTERM,
        }
    }
}

/// The take in flight: a `wait`, or an ack with `next`.
struct Take {
    /// Tells its [`Event`]s from those of an earlier take.
    generation: u64,
    /// The task, aborted when the worker stops.
    task: JoinHandle<()>,
    /// The ack riding on it, until it is settled.
    ack: Option<(Uuid, AckRequest)>,
}

/// The worker's loop and its state.
pub(super) struct Worker {
    /// The peer and the broker, shared with the tasks.
    shared: Arc<Shared>,
    /// The program each handler runs.
    spec: Arc<Spec>,
    /// Where the JSON lines go (with `--json`).
    out: Output,
    /// Print one line per command on stderr.
    human: bool,
    /// Colour the marks of those lines.
    color: bool,
    /// How many handlers may run at once (`--concurrency`).
    concurrency: usize,
    /// When to kill a handler (`--timeout`).
    timeout: Option<Duration>,
    /// Given to every task, to report back.
    tx: Tx,
    /// Where the loop hears its tasks.
    rx: mpsc::UnboundedReceiver<Event>,
    /// Handlers running, by command id.
    running: HashMap<Uuid, JoinHandle<()>>,
    /// The take in flight, if any: at most one at a time.
    take: Option<Take>,
    /// The generation of the latest take started.
    generation: u64,
    /// Finished commands whose ack is not settled yet.
    unacked: HashMap<Uuid, AckRequest>,
    /// A first signal came, or taking failed: take nothing more.
    stopping: bool,
    /// Why the worker stops on its own.
    failure: Option<CliError>,
}

impl Worker {
    /// A worker for the registered peer in `shared`: lines on stderr when it
    /// is a terminal or without `--json`, coloured on a terminal unless
    /// `NO_COLOR` is set.
    pub(super) fn new(
        shared: Arc<Shared>,
        spec: Arc<Spec>,
        out: Output,
        concurrency: usize,
        timeout: Option<Duration>,
    ) -> Worker {
        let (tx, rx) = mpsc::unbounded_channel();
        let stderr_tty = std::io::stderr().is_terminal();
        Worker {
            shared,
            spec,
            out,
            human: stderr_tty || !out.json,
            color: stderr_tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
            concurrency,
            timeout,
            tx,
            rx,
            running: HashMap::new(),
            take: None,
            generation: 0,
            unacked: HashMap::new(),
            stopping: false,
            failure: None,
        }
    }

    /// Serves until stopped: by a signal (a second one exits at once with
    /// 128 + its number) or by a take that cannot go on.
    pub(super) async fn run(mut self, mut signals: Signals) -> Result<Exit, CliError> {
        let mut beat = tokio::time::interval_at(Instant::now() + HEARTBEAT_EVERY, HEARTBEAT_EVERY);
        loop {
            if !self.stopping && self.take.is_none() && self.running.len() < self.concurrency {
                self.start_take(None);
            }
            if self.stopping
                && self.running.is_empty()
                && self.unacked.is_empty()
                && self.take.is_none()
            {
                break;
            }
            tokio::select! {
                Some(ev) = self.rx.recv() => self.on_event(ev),
                sig = signals.next() => {
                    if self.stopping {
                        self.force().await;
                        std::process::exit(128 + sig);
                    }
                    let running = self.running.len();
                    eprintln!(
                        "cipc work: stopping: no new orders; {}{}",
                        match running {
                            0 => "nothing is running".to_string(),
                            1 => "waiting for the running handler".to_string(),
                            n => format!("waiting for {n} running handlers"),
                        },
                        if running > 0 { " (Ctrl-C again kills them and requeues their commands)" } else { "" }
                    );
                    self.stop();
                }
                _ = beat.tick() => {
                    if !self.stopping && self.take.is_none() {
                        let (client, ident) = self.shared.client();
                        tokio::spawn(async move {
                            let _ = client.heartbeat(&ident.id.to_string()).await;
                        });
                    }
                }
            }
        }
        self.disconnect().await;
        match self.failure {
            Some(e) => Err(e),
            None => Ok(exit::OK),
        }
    }

    /// Moves the state on by what a task reported.
    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Took {
                generation,
                command,
            } => {
                if self.take.as_ref().map(|t| t.generation) == Some(generation) {
                    self.take = None;
                }
                if self.stopping {
                    // Taken as the stop began: disconnecting gives it back.
                    return;
                }
                self.start_handler(*command);
            }
            Event::TakeFailed { generation, error } => {
                if self.take.as_ref().map(|t| t.generation) == Some(generation) {
                    self.take = None;
                }
                if !self.stopping {
                    eprintln!(
                        "cipc work: {}; stopping",
                        error.message.as_deref().unwrap_or("cannot take orders")
                    );
                    self.failure = Some(CliError {
                        code: error.code,
                        message: None,
                    });
                    self.stop();
                }
            }
            Event::Finished {
                command,
                outcome,
                elapsed,
            } => {
                self.running.remove(&command.id);
                self.report(&command, &outcome, elapsed);
                let req = outcome.ack(command.attempt);
                self.unacked.insert(command.id, req.clone());
                if !self.stopping && self.take.is_none() && self.running.len() < self.concurrency {
                    self.start_take(Some((command.id, req)));
                } else {
                    self.spawn_ack(command.id, req, false);
                }
            }
            Event::Acked { id, error } => {
                if let Some(t) = &mut self.take {
                    if t.ack.as_ref().is_some_and(|(a, _)| *a == id) {
                        t.ack = None;
                    }
                }
                if self.unacked.remove(&id).is_some() {
                    if let Some(e) = error {
                        self.report_ack_error(id, &e);
                    }
                }
            }
        }
    }

    /// Starts taking the next command: a `wait`, or (with `ack`) an ack with `next`.
    fn start_take(&mut self, ack: Option<(Uuid, AckRequest)>) {
        self.generation += 1;
        let generation = self.generation;
        let task = tokio::spawn(take(
            self.shared.clone(),
            self.tx.clone(),
            generation,
            ack.clone(),
        ));
        self.take = Some(Take {
            generation,
            task,
            ack,
        });
    }

    /// Acks on its own, for when no take can carry the ack (no free slot,
    /// one in flight already, or stopping).
    fn spawn_ack(&self, id: Uuid, req: AckRequest, maybe_landed: bool) {
        let (shared, tx) = (self.shared.clone(), self.tx.clone());
        tokio::spawn(async move {
            let error = plain_ack(&shared, id, &req, maybe_landed).await;
            let _ = tx.send(Event::Acked { id, error });
        });
    }

    /// Runs the handler for `command` in a task of its own, which reports
    /// [`Event::Finished`].
    fn start_handler(&mut self, command: Command) {
        let (shared, spec, tx, timeout) = (
            self.shared.clone(),
            self.spec.clone(),
            self.tx.clone(),
            self.timeout,
        );
        let id = command.id;
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let outcome = run_handler(&spec, &shared, &command, timeout).await;
            let _ = tx.send(Event::Finished {
                command: Box::new(command),
                outcome,
                elapsed: started.elapsed(),
            });
        });
        self.running.insert(id, task);
    }

    /// Stops taking: the take in flight is dropped (an ack riding on it is
    /// sent again on its own; disconnecting gives back a command it took).
    fn stop(&mut self) {
        self.stopping = true;
        if let Some(t) = self.take.take() {
            t.task.abort();
            if let Some((id, req)) = t.ack {
                if self.unacked.contains_key(&id) {
                    self.spawn_ack(id, req, true);
                }
            }
        }
    }

    /// The second signal: kill the handlers, let acks under way land for a
    /// moment, and give the rest back by disconnecting.
    async fn force(&mut self) {
        eprintln!(
            "cipc work: killing {} running handler(s); their commands go back to the queue",
            self.running.len()
        );
        for (_, task) in self.running.drain() {
            task.abort();
            // Dropping the handler's future kills its process (kill_on_drop).
            let _ = task.await;
        }
        let deadline = Instant::now() + FORCED_ACK_GRACE;
        while !self.unacked.is_empty() {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(Event::Acked { id, error })) => {
                    if self.unacked.remove(&id).is_some() {
                        if let Some(e) = error {
                            self.report_ack_error(id, &e);
                        }
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        self.disconnect().await;
    }

    /// Takes the peer offline at the end, which also gives back any command
    /// it still holds; failing that, the broker notices the silence later.
    async fn disconnect(&self) {
        let (client, ident) = self.shared.client();
        match client.disconnect(&ident.id.to_string()).await {
            Ok(_) => eprintln!("cipc work: stopped; peer {} is offline", ident.id),
            Err(e) => eprintln!(
                "cipc work: stopped, but could not disconnect peer {} ({e}); the broker marks it offline once it is silent",
                ident.id
            ),
        }
    }

    /// One line for the finished command: human on stderr, JSON on stdout.
    fn report(&self, c: &Command, outcome: &Outcome, elapsed: Duration) {
        if self.human {
            let (mark, rest) = match outcome {
                Outcome::Done(_) => (self.paint("✓", true), String::new()),
                Outcome::Failed { short, .. } => (self.paint("✗", false), format!(" {short}")),
            };
            eprintln!(
                "{mark} {} {} {}{rest}",
                c.action,
                short_id(c.id),
                took(elapsed)
            );
        }
        if self.out.json {
            let mut line = json!({
                "id": c.id,
                "action": c.action,
                "from": c.from,
                "attempt": c.attempt,
                "elapsedMs": u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            });
            match outcome {
                Outcome::Done(v) => {
                    line["status"] = json!("acked");
                    line["result"] = v.clone();
                }
                Outcome::Failed { error, .. } => {
                    line["status"] = json!("failed");
                    line["error"] = json!(error);
                }
            }
            let _ = self.out.line(&line.to_string());
        }
    }

    /// Says that an ack did not land (the command's line was already
    /// printed when it finished): human on stderr, JSON on stdout.
    fn report_ack_error(&self, id: Uuid, error: &str) {
        if self.human {
            eprintln!("  ack of {} did not land: {error}", short_id(id));
        }
        if self.out.json {
            let _ = self
                .out
                .line(&json!({"id": id, "ackError": error}).to_string());
        }
    }

    /// `mark` in green (`good`) or red, when colour is on.
    fn paint(&self, mark: &str, good: bool) -> String {
        if !self.color {
            return mark.to_string();
        }
        let code = if good { "32" } else { "31" };
        format!("\x1b[{code}m{mark}\x1b[0m")
    }
}

/// `01a2…f29e`: the first and last four hex digits of an id.
fn short_id(id: Uuid) -> String {
    let hex = id.simple().to_string();
    format!("{}…{}", &hex[..4], &hex[hex.len() - 4..])
}

/// `340ms`, `1.2s`, `2m 5s`.
fn took(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else if d < Duration::from_secs(60) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        human_duration(d)
    }
}

/// The short forms in the per-command lines.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_times_are_short() {
        let id = Uuid::parse_str("01a2b3c4-0000-7000-8000-00000000f29e").unwrap();
        assert_eq!(short_id(id), "01a2…f29e");
        assert_eq!(took(Duration::from_millis(340)), "340ms");
        assert_eq!(took(Duration::from_millis(1240)), "1.2s");
    }
}
