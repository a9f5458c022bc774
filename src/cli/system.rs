//! `cipc status` (everything at a glance) and `cipc reset` (start over).

use super::chan::channel_table;
use super::commands::command_table;
use super::output::human_duration;
use super::peers::peer_table;
use super::signal::signal_table;
use super::Exit;
use super::{exit, CliError, ClientArgs, Ctx};
use clap::Args;
use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

/// Flags of `cipc status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Broker, identity and output flags.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Flags of `cipc reset`.
#[derive(Debug, Args)]
pub struct ResetArgs {
    /// Broker, identity and output flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    /// Answering no to the question changes nothing and exits 0.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// Runs `cipc status`; returns the exit code.
pub async fn status(_args: StatusArgs, ctx: Ctx) -> Result<Exit, CliError> {
    let out = ctx.out;
    let s = ctx.client.status().await?;
    if out.json {
        out.json(&s)?;
        return Ok(exit::OK);
    }
    let up = human_duration(Duration::from_secs(s.uptime_ms / 1000));
    out.line(&format!(
        "cipc {} at {}, up {up}",
        s.version,
        ctx.client.base_url()
    ))?;

    let online = s
        .peers
        .iter()
        .filter(|p| p.status == crate::api::PeerStatus::Online)
        .count();
    out.line(&format!(
        "\nPeers: {} known, {online} online",
        s.peers.len()
    ))?;
    if !s.peers.is_empty() {
        out.table(peer_table(&out, &s.peers))?;
    }

    let counts: Vec<String> = crate::api::CommandStatus::ALL
        .iter()
        .filter_map(|st| {
            let n = s.commands.counts.get(st.as_str()).copied().unwrap_or(0);
            (n > 0).then(|| format!("{n} {}", st.as_str()))
        })
        .collect();
    let counts = if counts.is_empty() {
        "none".to_string()
    } else {
        counts.join(", ")
    };
    out.line(&format!("\nCommands: {counts}"))?;
    if !s.commands.recent.is_empty() {
        let recent = &s.commands.recent;
        out.table(command_table(&out, &recent[..recent.len().min(10)]))?;
    }

    out.line(&format!("\nChannels: {}", s.channels.len()))?;
    if !s.channels.is_empty() {
        out.table(channel_table(&out, &s.channels))?;
    }
    out.line(&format!("\nSignals: {}", s.signals.len()))?;
    if !s.signals.is_empty() {
        out.table(signal_table(&out, &s.signals))?;
    }
    Ok(exit::OK)
}

/// Runs `cipc reset`; returns the exit code.
pub async fn reset(args: ResetArgs, ctx: Ctx) -> Result<Exit, CliError> {
    let out = ctx.out;
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(CliError::usage(
                "refusing to reset without confirmation: stdin is not a terminal; pass --yes to clear everything",
            ));
        }
        eprint!(
            "Reset the broker at {}? This deletes every peer, command, channel and signal. [y/N] ",
            ctx.client.base_url()
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .map_err(|e| CliError::error(format!("cannot read the answer: {e}")))?;
        if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            // Declining is an answer, not a failure.
            eprintln!("{}: nothing was reset", super::prefix());
            return Ok(exit::OK);
        }
    }
    let r = ctx.client.reset().await?;
    if out.json {
        out.json(&r)?;
    } else {
        out.line("reset: every peer, command, channel and signal is gone")?;
    }
    Ok(exit::OK)
}
