//! `cipc signal`: emit, wait for, inspect and clear named latches.
//!
//! The classic use: one terminal runs `cipc signal wait server-up` and the
//! other runs `cipc signal emit server-up --data '{"port":8080}'` once ready.

use super::output::{ago, compact, human_duration, Output};
use super::poll::{deadline, long_poll, Waited};
use super::Exit;
use super::{exit, read_json_arg, CliError, ClientArgs, Ctx};
use crate::api::{EmitRequest, Signal};
use clap::{Args, Subcommand};
use std::time::Duration;

/// Flags of `cipc signal`.
#[derive(Debug, Args)]
pub struct SignalArgs {
    /// Broker, identity and output flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// What to do.
    #[command(subcommand)]
    pub cmd: SignalCmd,
}

/// The `cipc signal` subcommands.
#[derive(Debug, Subcommand)]
pub enum SignalCmd {
    /// Emit (set) a signal, releasing its waiters; emitting again replaces the data.
    Emit {
        /// The signal's name.
        name: String,
        /// Data carried by the signal: JSON inline, @file, or - for stdin.
        #[arg(long, value_name = "JSON|@FILE|-")]
        data: Option<String>,
    },
    /// Wait until a signal is emitted and print it (exit 124 on timeout).
    Wait {
        /// The signal's name.
        name: String,
        /// Give up after this long.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, value_name = "DURATION")]
        timeout: Duration,
        /// Wait as long as it takes.
        #[arg(long, conflicts_with = "timeout")]
        forever: bool,
        /// Wait for an emission newer than this count (from an earlier `get`/`wait`).
        #[arg(long, value_name = "COUNT")]
        after: Option<u64>,
    },
    /// Print a signal (emitted: false if it never was).
    Get {
        /// The signal's name.
        name: String,
    },
    /// Clear a signal so that waiters block again (its count is kept).
    Clear {
        /// The signal's name.
        name: String,
    },
    /// List every signal.
    List,
}

impl SignalCmd {
    /// The subcommand's name, as typed.
    pub fn name(&self) -> &'static str {
        match self {
            SignalCmd::Emit { .. } => "emit",
            SignalCmd::Wait { .. } => "wait",
            SignalCmd::Get { .. } => "get",
            SignalCmd::Clear { .. } => "clear",
            SignalCmd::List => "list",
        }
    }
}

/// Runs `cipc signal ...`; returns the exit code.
pub async fn run(args: SignalArgs, ctx: Ctx) -> Result<Exit, CliError> {
    let out = ctx.out;
    match args.cmd {
        SignalCmd::Emit { name, data } => {
            let data = data
                .as_deref()
                .map(|d| read_json_arg(d, "--data"))
                .transpose()?;
            let r = ctx.client.emit(&name, &EmitRequest { data }).await?;
            if out.json {
                out.json(&r)?;
            } else {
                out.line(&format!("emitted {} (#{})", r.signal.name, r.signal.count))?;
            }
        }
        SignalCmd::Wait {
            name,
            timeout,
            forever,
            after,
        } => {
            let until = deadline(timeout, forever);
            let spinner = out.spinner(format!("waiting for signal {name}"));
            let client = &ctx.client;
            let waited = long_poll(until, &spinner, "waiting for the signal", |ms| {
                let name = name.clone();
                async move {
                    let r = client.wait_signal(&name, after, ms).await?;
                    let pending = r.timed_out;
                    Ok((r, pending))
                }
            })
            .await?;
            drop(spinner);
            match waited {
                Waited::Done(r) => {
                    if out.json {
                        out.json(&r)?;
                    } else {
                        out.line(&describe(&r.signal))?;
                    }
                }
                Waited::TimedOut(r) => {
                    if out.json {
                        out.json(&r)?;
                    }
                    eprintln!(
                        "cipc signal wait: {name} was not emitted within {}",
                        human_duration(timeout)
                    );
                    return Ok(exit::TIMED_OUT);
                }
            }
        }
        SignalCmd::Get { name } => {
            let r = ctx.client.signal(&name).await?;
            if out.json {
                out.json(&r)?;
            } else {
                out.table(signal_table(&out, std::slice::from_ref(&r.signal)))?;
            }
        }
        SignalCmd::Clear { name } => {
            let r = ctx.client.clear_signal(&name).await?;
            if out.json {
                out.json(&r)?;
            } else {
                out.line(&format!("cleared {}", r.signal.name))?;
            }
        }
        SignalCmd::List => {
            let r = ctx.client.signals().await?;
            if out.json {
                out.json(&r)?;
            } else if r.signals.is_empty() {
                out.line("no signals yet; emit one with `cipc signal emit NAME`")?;
            } else {
                out.table(signal_table(&out, &r.signals))?;
            }
        }
    }
    Ok(exit::OK)
}

fn describe(s: &Signal) -> String {
    let mut line = format!("{} emitted (#{})", s.name, s.count);
    if let Some(by) = &s.emitted_by {
        line.push_str(&format!(" by {by}"));
    }
    if let Some(d) = &s.data {
        line.push_str(&format!(": {}", compact(d, 2000)));
    }
    line
}

/// The signals table (also used by `cipc status`).
pub fn signal_table(out: &Output, signals: &[Signal]) -> comfy_table::Table {
    let mut t = out.new_table(&["SIGNAL", "EMITTED", "COUNT", "WHEN", "BY", "DATA"]);
    for s in signals {
        t.add_row(vec![
            comfy_table::Cell::new(&s.name),
            out.status_cell(if s.emitted { "yes" } else { "no" }),
            comfy_table::Cell::new(s.count),
            comfy_table::Cell::new(s.emitted_at.map(ago).unwrap_or_default()),
            comfy_table::Cell::new(s.emitted_by.as_deref().unwrap_or("")),
            comfy_table::Cell::new(s.data.as_ref().map(|d| compact(d, 80)).unwrap_or_default()),
        ]);
    }
    t
}
