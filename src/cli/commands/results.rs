//! Following commands already sent: waiting for their results (`cipc
//! result`, and `cipc send --wait`), withdrawing one (`cipc cancel`) and
//! listing them (`cipc commands`).

use crate::api::{Command, CommandResponse, CommandStatus, CommandsResponse, DiscoverResponse};
use crate::cli::output::{ago, compact, human_duration, short_id, Output};
use crate::cli::poll::{deadline, long_poll, Waited};
use crate::cli::Exit;
use crate::cli::{exit, resolve_id, CliError, Ctx, IdKind};
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;

use super::send::{held, nobody_holds};
use super::{CancelArgs, CommandsArgs, ResultArgs};

/// One command `send --wait` or `result` waits for: its id, what the
/// spinner says, and what is known of it already (a finished command is
/// not asked for again).
pub(super) struct Pending {
    id: String,
    doing: String,
    known: Option<CommandResponse>,
}

impl Pending {
    pub(super) fn new(c: &Command, doing: String) -> Pending {
        Pending {
            id: c.id.to_string(),
            doing,
            known: c.status.is_terminal().then(|| CommandResponse {
                command: c.clone(),
                timed_out: false,
            }),
        }
    }
}

/// Waits for each command to finish, until the deadline, and prints the
/// outcomes: one `{"command": ...}` document, or `{"commands": [...]}` for
/// a fan-out, with an explicit `--json` (`json`); the results alone
/// otherwise, into a pipe too (`reply=$(cipc send ... --wait)` is the
/// result, as docs/cli.md promises), with failures and timeouts said once
/// on stderr. Returns the exit code: 0 when all were
/// acked, 1 when one failed, was cancelled or expired, 124 when time ran out.
///
/// A command seen overdue (its `send --deadline` passed; the broker ends a
/// wait when that happens) is told once on stderr, and the wait goes on.
pub(super) async fn await_results(
    ctx: &Ctx,
    group: &str,
    waits: Vec<Pending>,
    until: Option<Instant>,
    timeout: Duration,
    fan_out: bool,
    json: bool,
) -> Result<Exit, CliError> {
    let out = ctx.out;
    let mut finished: Vec<CommandResponse> = Vec::new();
    let mut timed_out = false;
    for Pending { id, doing, known } in waits {
        if let Some(r) = known {
            finished.push(r);
            continue;
        }
        let spinner = out.spinner(doing);
        let client = &ctx.client;
        // The first look returns at once, so a command that is already
        // overdue is told now rather than after a whole long-poll.
        let first = std::cell::Cell::new(true);
        let told_overdue = std::cell::Cell::new(false);
        let (spinner_ref, id_ref) = (&spinner, id.as_str());
        let waited = long_poll(until, &spinner, "waiting for the result", |ms| {
            let (first, told_overdue) = (&first, &told_overdue);
            async move {
                let ms = if first.replace(false) { 0 } else { ms };
                let r = client.wait_result(id_ref, ms).await?;
                let c = &r.command;
                let pending = r.timed_out || !c.status.is_terminal();
                let ending = until.is_some_and(|d| Instant::now() >= d);
                if pending && c.overdue && !ending && !told_overdue.replace(true) {
                    spinner_ref.println(&format!(
                        "cipc {group}: command {} is overdue ({}); still waiting",
                        c.id,
                        deadline_passed(c)
                    ));
                }
                Ok((r, pending))
            }
        })
        .await?;
        drop(spinner);
        match waited {
            Waited::Done(r) => finished.push(r),
            Waited::TimedOut(mut r) => {
                r.timed_out = true;
                timed_out = true;
                finished.push(r);
            }
        }
    }

    let failed: Vec<&Command> = finished
        .iter()
        .map(|r| &r.command)
        .filter(|c| c.status.is_terminal() && c.status != CommandStatus::Acked)
        .collect();
    if json {
        if fan_out {
            out.json(&CommandsResponse {
                commands: finished.iter().map(|r| r.command.clone()).collect(),
                timed_out,
            })?;
        } else if let Some(r) = finished.first() {
            out.json(r)?;
        }
    } else {
        // Stdout carries results only; what went wrong is said once, below.
        for r in finished
            .iter()
            .filter(|r| r.command.status == CommandStatus::Acked)
        {
            print_result(&out, &r.command, fan_out)?;
        }
    }
    for c in &failed {
        eprintln!("cipc {group}: {}", failure_line(c, fan_out));
    }
    if timed_out {
        // Who could take a command nobody took: asked once, only now.
        let mut online: Option<DiscoverResponse> = None;
        for r in finished.iter().filter(|r| r.timed_out) {
            let c = &r.command;
            let overdue = if c.overdue {
                format!(" and overdue ({})", deadline_passed(c))
            } else {
                String::new()
            };
            let state = match (c.status, c.delivered_to) {
                (CommandStatus::Pending, _) => {
                    if online.is_none() {
                        online = ctx.client.discover().await.ok();
                    }
                    let why = match &online {
                        Some(o) if !held(o, &c.target) => format!(
                            "; {}: it waits until one connects (or withdraw it with `cipc cancel {}`)",
                            nobody_holds(o, &c.target),
                            short_id(c.id)
                        ),
                        _ => String::new(),
                    };
                    format!("it is still pending{overdue}: nobody took it{why}")
                }
                (CommandStatus::Delivered, Some(p)) => {
                    format!("peer {p} took it and is still working on it{overdue}")
                }
                (s, _) => format!("it is still {}{overdue}", s.as_str()),
            };
            eprintln!(
                "cipc {group}: no result for {} ({} for {}) within {}; {state}",
                c.id,
                c.action,
                c.target,
                human_duration(timeout),
            );
        }
        return Ok(exit::TIMED_OUT);
    }
    Ok(if failed.is_empty() {
        exit::OK
    } else {
        exit::ERROR
    })
}

/// "its deadline passed at T", for the lines about overdue commands.
fn deadline_passed(c: &Command) -> String {
    match c.deadline {
        Some(t) => format!("its deadline passed at {t}"),
        None => "its deadline passed".to_string(),
    }
}

fn failure_line(c: &Command, label: bool) -> String {
    let why = c.error.as_deref().unwrap_or("no reason given");
    let what = if label {
        format!("{} for {}", c.action, c.target)
    } else {
        c.action.clone()
    };
    format!("command {} ({what}) {}: {why}", c.id, c.status.as_str())
}

/// Prints an acked command's result (`TARGET: result` for a fan-out).
pub(super) fn print_result(out: &Output, c: &Command, label: bool) -> Result<(), CliError> {
    let prefix = if label {
        format!("{}: ", c.target)
    } else {
        String::new()
    };
    let result = match &c.result {
        None | Some(Value::Null) => "(no result)".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(v) if label => compact(v, 200),
        Some(v) => serde_json::to_string_pretty(v).unwrap_or_default(),
    };
    out.line(&format!("{prefix}{result}"))
}

/// Runs `cipc result`: waits like `send --wait`; returns the exit code.
pub async fn result(args: ResultArgs, ctx: Ctx) -> Result<Exit, CliError> {
    let until = deadline(args.timeout, args.forever);
    let id = resolve_id(&ctx, &args.command_id, IdKind::Command).await?;
    let doing = format!("waiting for the result of command {id}");
    let waits = vec![Pending {
        id,
        doing,
        known: None,
    }];
    let json = args.client.json;
    await_results(&ctx, "result", waits, until, args.timeout, false, json).await
}

/// Runs `cipc cancel`; returns the exit code.
pub async fn cancel(args: CancelArgs, ctx: Ctx) -> Result<Exit, CliError> {
    let out = ctx.out;
    let id = resolve_id(&ctx, &args.command_id, IdKind::Command).await?;
    let r = ctx.client.cancel(&id).await?;
    if out.json {
        out.json(&r)?;
    } else {
        let c = &r.command;
        out.line(&format!(
            "cancelled {} ({} for {})",
            c.id, c.action, c.target
        ))?;
    }
    Ok(exit::OK)
}

/// Runs `cipc commands`; returns the exit code.
pub async fn list(args: CommandsArgs, ctx: Ctx) -> Result<Exit, CliError> {
    let out = ctx.out;
    let r = ctx
        .client
        .list_commands_where(
            &crate::api::CommandFilter {
                status: args.status,
                target: args.target.clone(),
                overdue: args.overdue.then_some(true),
                origin: None,
            },
            args.limit,
        )
        .await?;
    if out.json {
        out.json(&r)?;
    } else if r.commands.is_empty() {
        out.line(if args.overdue {
            "no overdue commands"
        } else {
            "no commands"
        })?;
    } else {
        out.table(command_table(&out, &r.commands))?;
    }
    Ok(exit::OK)
}

/// The commands table, newest first as given (also used by `cipc status`).
pub fn command_table(out: &Output, commands: &[Command]) -> comfy_table::Table {
    let mut t = out.new_table(&[
        "COMMAND",
        "ACTION",
        "TARGET",
        "STATUS",
        "FROM",
        "DELIVERED TO",
        "AGE",
    ]);
    for c in commands {
        t.add_row(vec![
            comfy_table::Cell::new(short_id(c.id)),
            comfy_table::Cell::new(&c.action),
            comfy_table::Cell::new(&c.target),
            status_cell(out, c),
            comfy_table::Cell::new(&c.from),
            comfy_table::Cell::new(c.delivered_to.map(short_id).unwrap_or_default()),
            comfy_table::Cell::new(ago(c.created_at)),
        ]);
    }
    t
}

/// A command's STATUS cell: its status, marked when it missed its deadline
/// ("delivered OVERDUE" while it runs late, "acked (late)" once finished).
fn status_cell(out: &Output, c: &Command) -> comfy_table::Cell {
    if !c.overdue {
        return out.status_cell(c.status.as_str());
    }
    let word = c.status.as_str();
    if c.status.is_terminal() {
        out.status_cell_as(word, &format!("{word} (late)"))
    } else {
        out.status_cell_as("overdue", &format!("{word} OVERDUE"))
    }
}
