//! The taker's side: `cipc wait` hands the next command to a script,
//! `cipc ack` reports its outcome.

use crate::api::{AckRequest, CommandStatus};
use crate::cli::output::{compact, human_duration};
use crate::cli::poll::{deadline, long_poll, Waited};
use crate::cli::Exit;
use crate::cli::{exit, read_json_arg, resolve_id, CliError, Ctx, IdKind};
use serde_json::Value;

use super::{AckArgs, WaitArgs};

/// Runs `cipc wait`; returns the exit code.
pub async fn wait(args: WaitArgs, ctx: Ctx) -> Result<Exit, CliError> {
    let out = ctx.out;
    let peer = ctx.peer_or(None, "wait")?;
    let until = deadline(args.timeout, args.forever);
    let spinner = out.spinner(format!("waiting for a command for peer {peer}"));
    let client = &ctx.client;
    let waited = long_poll(until, &spinner, "waiting for a command", |ms| {
        let peer = peer.clone();
        async move {
            let r = client.wait_command(&peer, ms).await?;
            let empty = r.command.is_none();
            Ok((r, empty))
        }
    })
    .await?;
    drop(spinner);
    match waited {
        Waited::Done(r) => {
            if out.json {
                out.json(&r)?;
            } else if let Some(c) = &r.command {
                let params = match &c.params {
                    Value::Object(m) if m.is_empty() => String::new(),
                    v => format!(" {}", compact(v, 400)),
                };
                out.line(&format!("{}{}", c.action, params))?;
                out.line(&format!("  command {} from {}", c.id, c.from))?;
                if let Some(t) = c.deadline {
                    let late = if c.overdue { " (already overdue)" } else { "" };
                    out.line(&format!("  due by {t}{late}"))?;
                }
                out.line(&format!(
                    "  when done: cipc ack {} --attempt {} --result '{{\"ok\":true}}'   (or --error MESSAGE)",
                    c.id, c.attempt
                ))?;
            }
            Ok(exit::OK)
        }
        Waited::TimedOut(r) => {
            if out.json {
                out.json(&r)?;
            }
            eprintln!(
                "cipc wait: no command for peer {peer} within {}",
                human_duration(args.timeout)
            );
            Ok(exit::TIMED_OUT)
        }
    }
}

/// Runs `cipc ack`; returns the exit code.
pub async fn ack(args: AckArgs, ctx: Ctx) -> Result<Exit, CliError> {
    let out = ctx.out;
    let result = args
        .result
        .as_deref()
        .map(|r| read_json_arg(r, "--result"))
        .transpose()?;
    let req = AckRequest {
        result,
        error: args.error,
        attempt: args.attempt,
    };
    let id = resolve_id(&ctx, &args.command_id, IdKind::Command).await?;
    let r = ctx.client.ack(&id, &req).await?;
    if out.json {
        out.json(&r)?;
    } else {
        let c = &r.command;
        match c.status {
            CommandStatus::Failed => out.line(&format!(
                "marked {} ({}) failed: {}",
                c.id,
                c.action,
                c.error.as_deref().unwrap_or("")
            ))?,
            _ => out.line(&format!("acked {} ({})", c.id, c.action))?,
        }
    }
    Ok(exit::OK)
}
