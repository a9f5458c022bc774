//! `cipc send`: building the request, saying who holds the target, and
//! printing what was sent (`--wait` hands over to [`super::results`]).

use crate::api::{DiscoverResponse, SendRequest};
use crate::cli::output::Output;
use crate::cli::poll::{deadline, long_poll, poll_ms, Waited};
use crate::cli::Exit;
use crate::cli::{exit, millis, prefix, read_json_arg, CliError, Ctx};
use crate::client::Sent;
use serde_json::{Map, Value};
use std::time::Duration;

use super::results::{await_results, Pending};
use super::SendArgs;

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
pub(super) fn held(online: &DiscoverResponse, target: &str) -> bool {
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
pub(super) fn nobody_holds(online: &DiscoverResponse, target: &str) -> String {
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
