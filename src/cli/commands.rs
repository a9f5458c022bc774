//! `cipc send`, `cipc wait`, `cipc ack`, `cipc result`, `cipc cancel` and
//! `cipc commands`: the command round trip from a shell.
//!
//! `send --wait` is request and reply in one line of shell; `wait` hands the
//! next command to a script as JSON; `ack` reports the outcome. `result`
//! waits for a command sent earlier (the same wait as `send --wait`),
//! `cancel` withdraws one, and `commands` lists them newest first.

use super::output::{ago, compact, human_duration, short_id, Output};
use super::poll::{deadline, long_poll, poll_ms, Waited};
use super::Exit;
use super::{
    exit, millis, parse_span, prefix, read_json_arg, resolve_id, CliError, ClientArgs, Ctx, IdKind,
};
use crate::api::{
    AckRequest, Command, CommandResponse, CommandStatus, CommandsResponse, DiscoverResponse,
    SendRequest,
};
use crate::client::Sent;
use clap::Args;
use serde_json::{Map, Value};
use std::time::Duration;
use tokio::time::Instant;

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
    /// Refuse to send (exit 1) unless an online peer holds the target
    /// (has that role, or is that peer) right now; without it a command for
    /// an absent role is queued until one connects.
    #[arg(long)]
    pub require_online: bool,
    /// Block until the command is acked and print its result alone, into a pipe too (--json: the whole command; exit 1 if it failed).
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
    /// The command's id (from `cipc wait`): whole, or a unique part of at
    /// least 6 characters (the short id `cipc commands` shows).
    pub command_id: String,
    /// It succeeded, with this outcome as JSON: inline, @file, or - for stdin.
    #[arg(long, value_name = "JSON|@FILE|-")]
    pub result: Option<String>,
    /// It failed, with this message (instead of --result: a command either
    /// succeeded or failed).
    #[arg(long, value_name = "MESSAGE", conflicts_with = "result")]
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
    /// The command's id (from `cipc send` or `cipc commands`): whole, or a
    /// unique part of at least 6 characters.
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
    /// The id of a pending or delivered command: whole, or a unique part of
    /// at least 6 characters (the short id `cipc commands` shows).
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

/// Whether an online peer holds `target` (has that role or is that peer),
/// by the broker's discover answer. `"*"` is held when anyone is online.
fn held(online: &DiscoverResponse, target: &str) -> bool {
    if target == "*" {
        return online.count > 0;
    }
    // The broker's own rule: the role, or the peer id in any spelling.
    let as_id = uuid::Uuid::parse_str(target).ok();
    online
        .peers
        .iter()
        .any(|p| p.role == target || Some(p.id) == as_id)
}

/// "no online peer holds role X (online roles: a, b; did you mean a?)": why
/// a command for `target` would wait, from a discover answer.
fn nobody_holds(online: &DiscoverResponse, target: &str) -> String {
    if target == "*" {
        return "nobody is online".to_string();
    }
    let who = if uuid::Uuid::parse_str(target).is_ok() {
        format!("peer {target} is not online")
    } else {
        format!("no online peer holds role {target}")
    };
    if online.roles.is_empty() {
        return format!("{who} (nobody is online)");
    }
    let close = if uuid::Uuid::parse_str(target).is_ok() {
        None
    } else {
        online
            .roles
            .iter()
            .filter(|r| strsim::levenshtein(r, target) <= 2)
            .min_by_key(|r| strsim::levenshtein(r, target))
    };
    let hint = close
        .map(|r| format!("; did you mean {r}?"))
        .unwrap_or_default();
    format!("{who} (online roles: {}{hint})", online.roles.join(", "))
}

/// Runs `cipc send`; returns the exit code.
///
/// Who holds the target is asked first when it matters (`--require-online`,
/// and `--wait`, which should say at once that nobody will take the
/// command); a plain send asks only when the broker answered that the
/// command is queued.
pub async fn send(args: SendArgs, ctx: Ctx) -> Result<Exit, CliError> {
    let out = ctx.out;
    // With --wait, only an explicit --json prints the command document;
    // otherwise stdout carries the result alone, into a pipe too.
    let json = args.client.json;
    let params = build_params(args.params.as_deref(), &args.param)?;
    let mut req = SendRequest {
        from: args.from,
        target: args.target.clone(),
        action: args.action.clone(),
        params,
        dedupe_key: args.dedupe_key,
        ttl: args.ttl.map(millis),
        deadline: args.deadline.map(millis),
    };
    let fan_out = args.target == "*";
    let mut warned = false;
    if args.require_online || args.wait {
        let online = ctx.client.discover().await?;
        if !held(&online, &args.target) {
            if args.require_online {
                return Err(CliError::error(format!(
                    "{}; nothing was sent (without --require-online it would wait until one connects)",
                    nobody_holds(&online, &args.target)
                )));
            }
            if !fan_out {
                eprintln!(
                    "{}: {}; the command waits until one connects",
                    prefix(),
                    nobody_holds(&online, &args.target)
                );
                warned = true;
            }
        }
    }
    if !args.wait {
        let sent = ctx.client.send(&req).await?;
        if let Sent::One {
            response,
            created: true,
        } = &sent
        {
            if response.queued && !warned {
                let online = ctx.client.discover().await?;
                eprintln!(
                    "{}: {}; it waits until one connects",
                    prefix(),
                    nobody_holds(&online, &args.target)
                );
            }
        }
        if out.json {
            out.json(&sent)?;
        } else {
            print_sent(&out, &sent)?;
        }
        return Ok(exit::OK);
    }

    let timeout = args.timeout.unwrap_or(Duration::from_secs(300));
    let until = deadline(timeout, args.forever);
    // One request sends and waits (POST /commands/send?wait=ms). With a
    // dedupe key it can be repeated safely: if the broker restarts during
    // the wait, the same request answers the command it already holds
    // instead of sending another, so a key of our own is added.
    let repeatable = !fan_out;
    if repeatable && req.dedupe_key.is_none() {
        req.dedupe_key = Some(format!("cipc-send-{}", uuid::Uuid::new_v4()));
    }
    let spinner = out.spinner(format!("waiting for {} to do {}", args.target, args.action));
    let sent = if repeatable {
        let client = &ctx.client;
        let req = &req;
        match long_poll(until, &spinner, "sending and waiting", |ms| async move {
            Ok((client.send_and_wait(req, ms).await?, false))
        })
        .await?
        {
            Waited::Done(s) | Waited::TimedOut(s) => s,
        }
    } else {
        ctx.client.send_and_wait(&req, poll_ms(until)).await?
    };
    drop(spinner);
    // What is not finished yet (over an hour's wait, overdue, or out of
    // time) goes on with the result long-poll, which says so.
    let waits = match &sent {
        Sent::One { response, .. } => vec![Pending::new(
            &response.command,
            format!(
                "waiting for {} to do {}",
                response.command.target, response.command.action
            ),
        )],
        Sent::FanOut(r) => r
            .commands
            .iter()
            .map(|c| Pending::new(c, format!("waiting for {} to do {}", c.target, c.action)))
            .collect(),
    };
    await_results(&ctx, "send", waits, until, timeout, fan_out, json).await
}

/// One command `send --wait` or `result` waits for: its id, what the
/// spinner says, and what is known of it already (a finished command is
/// not asked for again).
struct Pending {
    id: String,
    doing: String,
    known: Option<CommandResponse>,
}

impl Pending {
    fn new(c: &Command, doing: String) -> Pending {
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
/// result, as the README promises), with failures and timeouts said once
/// on stderr. Returns the exit code: 0 when all were
/// acked, 1 when one failed, was cancelled or expired, 124 when time ran out.
///
/// A command seen overdue (its `send --deadline` passed; the broker ends a
/// wait when that happens) is told once on stderr, and the wait goes on.
async fn await_results(
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
                // Why, and who is online, is said on stderr.
                line.push_str(" (queued)");
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

/// Prints an acked command's result (`TARGET: result` for a fan-out).
fn print_result(out: &Output, c: &Command, label: bool) -> Result<(), CliError> {
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

    #[test]
    fn a_mistyped_role_gets_a_suggestion() {
        assert_eq!(strsim::levenshtein("frontned", "frontend"), 2);
        assert_eq!(strsim::levenshtein("", "abc"), 3);
        assert_eq!(strsim::levenshtein("backend", "backend"), 0);
        let online = DiscoverResponse {
            peers: Vec::new(),
            roles: vec!["backend".into(), "frontend".into()],
            count: 2,
        };
        assert_eq!(
            nobody_holds(&online, "frontned"),
            "no online peer holds role frontned (online roles: backend, frontend; did you mean frontend?)"
        );
        assert_eq!(
            nobody_holds(&online, "qa"),
            "no online peer holds role qa (online roles: backend, frontend)"
        );
    }
}
