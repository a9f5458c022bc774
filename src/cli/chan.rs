//! `cipc chan`: append to, read, follow and list channels.
//!
//! `follow` reads the channel's SSE stream and, when the connection drops
//! (broker restart, network blip), reconnects with `Last-Event-ID` so no
//! message is printed twice or skipped while it is still held by the broker.

use super::backoff::Backoff;
use super::output::{ago, compact, Output};
use super::Exit;
use super::{exit, read_json_arg, CliError, ClientArgs, Ctx};
use crate::api::Message;
use crate::client::ClientError;
use clap::{Args, Subcommand};
use std::time::Duration;

/// The broker sends a keep-alive every 15 s; this much silence means the connection is dead.
const STREAM_SILENCE: Duration = Duration::from_secs(45);

/// Flags of `cipc chan`.
#[derive(Debug, Args)]
pub struct ChanArgs {
    /// Broker, identity and output flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// What to do.
    #[command(subcommand)]
    pub cmd: ChanCmd,
}

/// The `cipc chan` subcommands.
#[derive(Debug, Subcommand)]
pub enum ChanCmd {
    /// Append a message (any JSON) to a channel.
    Send {
        /// The channel's name.
        name: String,
        /// The message: JSON inline, @file, or - for stdin.
        #[arg(value_name = "JSON|@FILE|-")]
        data: String,
    },
    /// Print a channel's messages after --since.
    Read {
        /// The channel's name.
        name: String,
        /// Only messages with a seq greater than this.
        #[arg(long, value_name = "SEQ")]
        since: Option<u64>,
        /// At most this many messages (broker default 1000).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// Print new messages as they arrive, until Ctrl-C (reconnects by itself).
    Follow {
        /// The channel's name.
        name: String,
        /// Start after this seq (0: the whole history) [default: only new messages].
        #[arg(long, value_name = "SEQ")]
        since: Option<u64>,
    },
    /// List channels with their message counts.
    List,
}

impl ChanCmd {
    /// The subcommand's name, as typed.
    pub fn name(&self) -> &'static str {
        match self {
            ChanCmd::Send { .. } => "send",
            ChanCmd::Read { .. } => "read",
            ChanCmd::Follow { .. } => "follow",
            ChanCmd::List => "list",
        }
    }
}

/// Runs `cipc chan ...`; returns the exit code.
pub async fn run(args: ChanArgs, ctx: Ctx) -> Result<Exit, CliError> {
    let out = ctx.out;
    match args.cmd {
        ChanCmd::Send { name, data } => {
            let data = read_json_arg(&data, "the message")?;
            let r = ctx.client.channel_send(&name, &data).await?;
            if out.json {
                out.json(&r)?;
            } else {
                out.line(&format!("sent #{} to {}", r.message.seq, r.message.channel))?;
            }
        }
        ChanCmd::Read { name, since, limit } => {
            let r = ctx.client.channel_messages(&name, since, limit).await?;
            if out.json {
                out.json(&r)?;
            } else if r.messages.is_empty() {
                out.line(&format!(
                    "no messages in {} after #{}",
                    r.channel,
                    since.unwrap_or(0)
                ))?;
            } else {
                let mut t = out.new_table(&["SEQ", "SENT", "FROM", "DATA"]);
                for m in &r.messages {
                    t.add_row(vec![
                        m.seq.to_string(),
                        ago(m.sent_at),
                        m.from.clone().unwrap_or_default(),
                        compact(&m.data, 200),
                    ]);
                }
                out.table(t)?;
                if r.first_seq > since.unwrap_or(0) + 1 {
                    out.line(&format!(
                        "(messages before #{} were trimmed by retention)",
                        r.first_seq
                    ))?;
                }
            }
        }
        ChanCmd::Follow { name, since } => return follow(&ctx, &name, since).await,
        ChanCmd::List => {
            let r = ctx.client.channels().await?;
            if out.json {
                out.json(&r)?;
            } else if r.channels.is_empty() {
                out.line("no channels yet; write one with `cipc chan send NAME JSON`")?;
            } else {
                out.table(channel_table(&out, &r.channels))?;
            }
        }
    }
    Ok(exit::OK)
}

/// The channels table (also used by `cipc status`).
pub fn channel_table(out: &Output, channels: &[crate::api::ChannelInfo]) -> comfy_table::Table {
    let mut t = out.new_table(&["CHANNEL", "MESSAGES", "FIRST", "LAST", "LAST SENT"]);
    for c in channels {
        t.add_row(vec![
            c.name.clone(),
            c.count.to_string(),
            c.first_seq.to_string(),
            c.last_seq.to_string(),
            c.last_at.map(ago).unwrap_or_default(),
        ]);
    }
    t
}

fn print_message(out: &Output, m: &Message) -> Result<(), CliError> {
    if out.json {
        return out.json(m);
    }
    let time = m.sent_at.to_string();
    let clock = time.get(11..19).unwrap_or(&time);
    let from = m
        .from
        .as_deref()
        .map(|f| format!(" {f}"))
        .unwrap_or_default();
    out.line(&format!(
        "#{} {clock}{from} {}",
        m.seq,
        compact(&m.data, 2000)
    ))
}

/// Streams a channel until Ctrl-C, reconnecting after drops.
async fn follow(ctx: &Ctx, name: &str, since: Option<u64>) -> Result<Exit, CliError> {
    let stream = follow_loop(ctx, name, since);
    tokio::select! {
        r = stream => r,
        _ = tokio::signal::ctrl_c() => Ok(exit::OK),
    }
}

async fn follow_loop(ctx: &Ctx, name: &str, since: Option<u64>) -> Result<Exit, CliError> {
    let out = ctx.out;
    // Without --since, start at the channel's current end: only new messages.
    let mut last = match since {
        Some(s) => s,
        None => {
            ctx.client
                .channel_messages(name, Some(i64::MAX as u64), Some(1))
                .await?
                .last_seq
        }
    };
    let mut first = true;
    let mut backoff = Backoff::new();
    let mut told = false;
    loop {
        let opened = if first {
            ctx.client.channel_stream(name, Some(last), None).await
        } else {
            ctx.client.channel_stream(name, None, Some(last)).await
        };
        let mut stream = match opened {
            Ok(s) => s,
            Err(e) if e.is_retryable() && !first => {
                if !told {
                    eprintln!("{}: lost the broker ({e}); reconnecting", super::prefix());
                    told = true;
                }
                backoff.wait(None).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if first && out.spinner {
            // A person at a terminal sees nothing until the first message:
            // say that the follow is on (stderr, so stdout stays messages).
            eprintln!(
                "{}: following {name} after #{last}; new messages appear below (Ctrl-C to stop)",
                super::prefix()
            );
        }
        first = false;
        backoff.reset();
        if told {
            eprintln!("{}: reconnected after #{last}", super::prefix());
            told = false;
        }
        loop {
            let ev = match tokio::time::timeout(STREAM_SILENCE, stream.next_event()).await {
                Ok(Ok(Some(ev))) => ev,
                // Closed, broken or silent: reconnect from the last seq seen.
                Ok(Ok(None) | Err(ClientError::Unreachable { .. })) | Err(_) => break,
                Ok(Err(e)) => return Err(e.into()),
            };
            if ev.event != "message" {
                continue;
            }
            let m: Message = serde_json::from_str(&ev.data).map_err(|e| {
                CliError::error(format!(
                    "the broker sent a message that does not fit the API ({e})"
                ))
            })?;
            if m.seq <= last {
                continue;
            }
            last = m.seq;
            print_message(&out, &m)?;
        }
    }
}
