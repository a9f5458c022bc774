//! `cipc send`, `cipc wait`, `cipc ack`, `cipc result`, `cipc cancel` and
//! `cipc commands`: the command round trip from a shell.
//!
//! `send --wait` is request and reply in one line of shell; `wait` hands the
//! next command to a script as JSON; `ack` reports the outcome. `result`
//! waits for a command sent earlier (the same wait as `send --wait`),
//! `cancel` withdraws one, and `commands` lists them newest first.

use super::output::{ago, compact, human_duration, short_id, Output};
use super::poll::{deadline, long_poll, Waited};
use super::Exit;
use super::{exit, millis, parse_span, read_json_arg, CliError, ClientArgs, Ctx};
use crate::api::{
    AckRequest, Command, CommandResponse, CommandStatus, CommandsResponse, SendRequest,
};
use crate::client::Sent;
use clap::Args;
use serde_json::{Map, Value};
use std::time::Duration;

/// Flags of `cipc send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// Broker, identity and output flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// A role, a peer id, or "*" for a copy to every online peer.
    pub target: String,
    /// What to do, e.g. start-server.
    pub action: String,
    /// One parameter: key=value (a string) or key:=JSON (a number, object, ...); repeatable.
    #[arg(long = "param", short = 'p', value_name = "KEY=VALUE")]
    pub param: Vec<String>,
    /// All parameters as JSON: inline, @file, or - for stdin (--param adds to it).
    #[arg(long, value_name = "JSON|@FILE|-")]
    pub params: Option<String>,
    /// Who is sending [default: this peer's role, else "anonymous"].
    #[arg(long, value_name = "NAME")]
    pub from: Option<String>,
    /// An idempotency key: sending it again answers the original command.
    #[arg(long, value_name = "KEY")]
    pub dedupe_key: Option<String>,
    /// Let the command expire if nobody takes it within this long (e.g. 10m).
    #[arg(long, value_parser = parse_span, value_name = "DURATION")]
    pub ttl: Option<Duration>,
    /// It should be finished within this long (e.g. 10m): past it, an
    /// unfinished command is marked overdue, shown to the people watching and
    /// listed by `cipc commands --overdue`. It keeps running.
    #[arg(long, value_parser = parse_span, value_name = "DURATION")]
    pub deadline: Option<Duration>,
    /// Block until the command is acked and print the result (exit 1 if it failed).
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this long (exit 124) [default: 5m].
    #[arg(long, requires = "wait", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    /// With --wait: wait as long as it takes.
    #[arg(long, requires = "wait", conflicts_with = "timeout")]
    pub forever: bool,
}

/// Flags of `cipc wait`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Broker, identity and output flags (--peer says whose commands to take).
    #[command(flatten)]
    pub client: ClientArgs,
    /// Give up after this long (exit 124).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
    /// Wait as long as it takes.
    #[arg(long, conflicts_with = "timeout")]
    pub forever: bool,
}

/// Flags of `cipc ack`.
#[derive(Debug, Args)]
pub struct AckArgs {
    /// Broker, identity and output flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// The command's id (from `cipc wait`).
    pub command_id: String,
    /// The outcome as JSON: inline, @file, or - for stdin.
    #[arg(long, value_name = "JSON|@FILE|-")]
    pub result: Option<String>,
    /// Report the command failed, with this message.
    #[arg(long, value_name = "MESSAGE")]
    pub error: Option<String>,
    /// The delivery you are acking (`attempt` in what `cipc wait` printed):
    /// if the command was since given to another taker, the ack is refused.
    #[arg(long, value_name = "N")]
    pub attempt: Option<u32>,
}

/// Flags of `cipc commands`.
#[derive(Debug, Args)]
pub struct CommandsArgs {
    /// Broker, identity and output flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Only commands with this status.
    #[arg(long, value_name = "STATUS", value_parser = status_parser())]
    pub status: Option<CommandStatus>,
    /// Only commands sent to this target (a role, a peer id, or "*").
    #[arg(long, value_name = "TARGET")]
    pub target: Option<String>,
    /// Only commands whose deadline (`send --deadline`) passed before they
    /// finished: still running late, or finished late.
    #[arg(long)]
    pub overdue: bool,
    /// At most this many, newest first (broker default 100).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

/// `--status`: one of the wire names, offered to shell completion.
fn status_parser() -> impl clap::builder::TypedValueParser<Value = CommandStatus> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(CommandStatus::ALL.map(CommandStatus::as_str))
        .try_map(|s| s.parse::<CommandStatus>())
}

/// Flags of `cipc result`.
#[derive(Debug, Args)]
pub struct ResultArgs {
    /// Broker, identity and output flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// The command's id (from `cipc send` or `cipc commands`).
    pub command_id: String,
    /// Give up after this long (exit 124).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
    /// Wait as long as it takes.
    #[arg(long, conflicts_with = "timeout")]
    pub forever: bool,
}

/// Flags of `cipc cancel`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// Broker, identity and output flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// The id of a pending or delivered command.
    pub command_id: String,
}

/// The parameters from `--params` and `--param`, or `None` for the broker's default (`{}`).
fn build_params(params: Option<&str>, pairs: &[String]) -> Result<Option<Value>, CliError> {
    let base = params.map(|p| read_json_arg(p, "--params")).transpose()?;
    if pairs.is_empty() {
        return Ok(base);
    }
    let mut map =
        match base {
            None => Map::new(),
            Some(Value::Object(m)) => m,
            Some(_) => return Err(CliError::usage(
                "--param needs --params to be a JSON object; put everything in --params instead",
            )),
        };
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(CliError::usage(format!(
                "--param {pair:?} is not key=value (a string) or key:=JSON"
            )));
        };
        let (key, value) = match key.strip_suffix(':') {
            Some(k) => (
                k,
                serde_json::from_str(value).map_err(|e| {
                    CliError::usage(format!(
                        "--param {pair:?}: the value after := is not JSON ({e}); use key=value for a plain string"
                    ))
                })?,
            ),
            None => (key, Value::String(value.to_string())),
        };
        if key.is_empty() {
            return Err(CliError::usage(format!(
                "--param {pair:?} has an empty key"
            )));
        }
        map.insert(key.to_string(), value);
    }
    Ok(Some(Value::Object(map)))
}

/// Runs `cipc send`; returns the exit code.
pub async fn send(args: SendArgs, ctx: Ctx) -> Result<Exit, CliError> {
    let out = ctx.out;
    let params = build_params(args.params.as_deref(), &args.param)?;
    let req = SendRequest {
        from: args.from,
        target: args.target.clone(),
        action: args.action.clone(),
        params,
        dedupe_key: args.dedupe_key,
        ttl: args.ttl.map(millis),
        deadline: args.deadline.map(millis),
    };
    let sent = ctx.client.send(&req).await?;
    if !args.wait {
        if out.json {
            out.json(&sent)?;
        } else {
            print_sent(&out, &sent)?;
        }
        return Ok(exit::OK);
    }

    let timeout = args.timeout.unwrap_or(Duration::from_secs(300));
    let waits = sent
        .commands()
        .into_iter()
        .map(|c| {
            (
                c.id.to_string(),
                format!("waiting for {} to do {}", c.target, c.action),
            )
        })
        .collect();
    let fan_out = matches!(sent, Sent::FanOut(_));
    await_results(&ctx, "send", waits, timeout, args.forever, fan_out).await
}

/// Waits for each command (`(id, what the spinner says)`) to finish, until
/// the deadline, and prints the outcomes: one `{"command": ...}` document, or
/// `{"commands": [...]}` for a fan-out. Returns the exit code: 0 when all were
/// acked, 1 when one failed, was cancelled or expired, 124 when time ran out.
///
/// A command seen overdue (its `send --deadline` passed; the broker ends a
/// wait when that happens) is told once on stderr, and the wait goes on.
async fn await_results(
    ctx: &Ctx,
    group: &str,
    waits: Vec<(String, String)>,
    timeout: Duration,
    forever: bool,
    fan_out: bool,
) -> Result<Exit, CliError> {
    let out = ctx.out;
    let until = deadline(timeout, forever);
    let mut finished: Vec<CommandResponse> = Vec::new();
    let mut timed_out = false;
    for (id, doing) in waits {
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
                let ending = until.is_some_and(|d| tokio::time::Instant::now() >= d);
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
    if out.json {
        if fan_out {
            out.json(&CommandsResponse {
                commands: finished.iter().map(|r| r.command.clone()).collect(),
                timed_out: false,
            })?;
        } else if let Some(r) = finished.first() {
            out.json(r)?;
        }
    } else {
        for r in &finished {
            print_outcome(&out, &r.command, finished.len() > 1)?;
        }
    }
    for c in &failed {
        eprintln!("cipc {group}: {}", failure_line(c));
    }
    if timed_out {
        for r in finished.iter().filter(|r| r.timed_out) {
            let c = &r.command;
            let overdue = if c.overdue {
                format!(" and overdue ({})", deadline_passed(c))
            } else {
                String::new()
            };
            eprintln!(
                "cipc {group}: no result for {} ({}) within {}; it is still {}{overdue}",
                c.id,
                c.action,
                human_duration(timeout),
                c.status.as_str()
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

fn failure_line(c: &Command) -> String {
    let why = c.error.as_deref().unwrap_or("no reason given");
    format!(
        "command {} ({}) {}: {}",
        c.id,
        c.action,
        c.status.as_str(),
        why
    )
}

fn print_sent(out: &Output, sent: &Sent) -> Result<(), CliError> {
    match sent {
        Sent::One { response, created } => {
            let c = &response.command;
            let mut line = format!("sent {} to {}: command {}", c.action, c.target, c.id);
            if let Some(t) = c.deadline {
                line.push_str(&format!(", due by {t}"));
            }
            if !created {
                line.push_str(&format!(
                    " (already sent with this dedupe key; it is {})",
                    c.status.as_str()
                ));
            } else if response.queued {
                line.push_str(&format!(" (queued: nobody online holds {} yet)", c.target));
            }
            out.line(&line)
        }
        Sent::FanOut(r) => {
            if r.commands.is_empty() {
                return out.line("nobody is online: no copies sent");
            }
            out.line(&format!(
                "sent a copy to {} online peers:",
                r.commands.len()
            ))?;
            let mut t = out.new_table(&["COMMAND", "TARGET", "ACTION"]);
            for c in &r.commands {
                t.add_row(vec![c.id.to_string(), c.target.clone(), c.action.clone()]);
            }
            out.table(t)
        }
    }
}

fn print_outcome(out: &Output, c: &Command, label: bool) -> Result<(), CliError> {
    let prefix = if label {
        format!("{}: ", c.target)
    } else {
        String::new()
    };
    match c.status {
        CommandStatus::Acked => {
            let result = match &c.result {
                None | Some(Value::Null) => "(no result)".to_string(),
                Some(Value::String(s)) => s.clone(),
                Some(v) if label => compact(v, 200),
                Some(v) => serde_json::to_string_pretty(v).unwrap_or_default(),
            };
            out.line(&format!("{prefix}{result}"))
        }
        s if s.is_terminal() => out.line(&format!(
            "{prefix}{} {}",
            out.paint(s.as_str(), false),
            c.error.as_deref().unwrap_or("")
        )),
        s => {
            let overdue = if c.overdue { ", overdue" } else { "" };
            out.line(&format!(
                "{prefix}still {}{overdue} (timed out)",
                s.as_str()
            ))
        }
    }
}

/// Runs `cipc wait`; returns the exit code.
pub async fn wait(args: WaitArgs, ctx: Ctx) -> Result<Exit, CliError> {
    let out = ctx.out;
    let peer = ctx.peer_or(None, "cipc wait")?;
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
    let r = ctx.client.ack(&args.command_id, &req).await?;
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

/// Runs `cipc commands`; returns the exit code.
pub async fn list(args: CommandsArgs, ctx: Ctx) -> Result<Exit, CliError> {
    let out = ctx.out;
    let r = ctx
        .client
        .list_commands_where(
            args.status,
            args.target.as_deref(),
            args.overdue.then_some(true),
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

/// Runs `cipc result`: waits like `send --wait`; returns the exit code.
pub async fn result(args: ResultArgs, ctx: Ctx) -> Result<Exit, CliError> {
    let doing = format!("waiting for the result of command {}", args.command_id);
    let waits = vec![(args.command_id, doing)];
    await_results(&ctx, "result", waits, args.timeout, args.forever, false).await
}

/// Runs `cipc cancel`; returns the exit code.
pub async fn cancel(args: CancelArgs, ctx: Ctx) -> Result<Exit, CliError> {
    let out = ctx.out;
    let r = ctx.client.cancel(&args.command_id).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_merge_strings_and_json() {
        let p = build_params(
            Some(r#"{"a":1}"#),
            &["b=x".into(), "c:=[1,2]".into(), "d=e=f".into()],
        )
        .unwrap()
        .unwrap();
        assert_eq!(p, serde_json::json!({"a":1,"b":"x","c":[1,2],"d":"e=f"}));
        assert!(build_params(None, &["nokey".into()]).is_err());
        assert!(build_params(Some("[1]"), &["a=b".into()]).is_err());
        assert_eq!(build_params(None, &[]).unwrap(), None);
    }
}
