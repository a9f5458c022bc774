//! `cipc ask`, `cipc answer` and `cipc questions`: an agent asks a person (or
//! any peer) for a decision and waits for it, the way `send --wait` waits for
//! a command's result.
//!
//! `ask` prints the answer alone, in a script too (`choice=$(cipc ask ...)`),
//! and the question document only with an explicit `--json`. Waits are [`long_poll`]s, so they
//! last as long as asked and survive a broker restart. Question ids may be
//! given in full or as the short id `cipc questions` shows.

use super::output::{ago, compact, human_duration, short_id, Output};
use super::poll::{deadline, long_poll, Waited};
use super::Exit;
use super::{exit, millis, parse_span, read_json_arg, CliError, ClientArgs, Ctx};
use crate::api::{AnswerRequest, AskRequest, Question, QuestionStatus};
use clap::{Args, Subcommand};
use std::time::Duration;

/// How long `cipc ask` and `cipc questions wait` wait by default: people
/// take a while to answer.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

const ASK_AFTER_HELP: &str = "\
Exit codes: 0 answered (the answer alone on stdout; with --json the question),
1 the question was cancelled or expired, 124 no answer within --timeout (the
question stays open: keep waiting with `cipc questions wait ID`).

The answer comes from the dashboard's \"needs you\" area, or from anyone running
`cipc answer ID TEXT`. In a script:
  choice=$(cipc ask \"Deploy to production?\" --choice yes --choice no)";

/// Flags of `cipc ask`.
#[derive(Debug, Args)]
#[command(after_help = ASK_AFTER_HELP)]
pub struct AskArgs {
    /// Broker, identity and output flags (--peer names the asker).
    #[command(flatten)]
    pub client: ClientArgs,
    /// The question, e.g. "Deploy to production now?" (1-2000 characters).
    pub text: String,
    /// One answer the person may pick; repeatable, in order [default: any text].
    #[arg(long = "choice", short = 'c', value_name = "CHOICE")]
    pub choices: Vec<String>,
    /// What helps to answer it (a diff summary, a command id): JSON inline,
    /// @file, or - for stdin.
    #[arg(long, value_name = "JSON|@FILE|-")]
    pub context: Option<String>,
    /// Stop waiting after this long (exit 124; the question stays open) [default: 30m].
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    /// Wait as long as it takes.
    #[arg(long, conflicts_with = "timeout")]
    pub forever: bool,
    /// Let the question expire if nobody answers it within this long (e.g. 1h).
    #[arg(long, value_parser = parse_span, value_name = "DURATION")]
    pub ttl: Option<Duration>,
    /// Who asks [default: this peer's role, else "anonymous"].
    #[arg(long, value_name = "NAME")]
    pub from: Option<String>,
    /// Ask and return at once, printing the question's id (JSON mode: the
    /// question); collect the answer later with `cipc questions wait ID`.
    #[arg(long, conflicts_with_all = ["timeout", "forever"])]
    pub no_wait: bool,
}

/// Flags of `cipc answer`.
#[derive(Debug, Args)]
pub struct AnswerArgs {
    /// Broker, identity and output flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// The question's id: whole, or a unique part (the short id `cipc questions` shows).
    pub id: String,
    /// The answer: one of the question's choices when it has them (a
    /// session's permission prompt: allow or deny, from a shell that names
    /// no peer, since only a person answers one).
    pub text: String,
    /// Who answers [default: this peer's role, else "someone"].
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
    /// Words that travel with the answer: for a permission, the reason the
    /// session is shown (e.g. cipc answer ID deny --note "use a branch").
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,
}

/// Flags of `cipc questions`.
#[derive(Debug, Args)]
pub struct QuestionsArgs {
    /// Broker, identity and output flags.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Only questions with this status (when listing).
    #[arg(long, value_name = "STATUS", value_parser = status_parser())]
    pub status: Option<QuestionStatus>,
    /// What to do (default: list).
    #[command(subcommand)]
    pub cmd: Option<QuestionsCmd>,
}

/// The `cipc questions` subcommands.
#[derive(Debug, Subcommand)]
pub enum QuestionsCmd {
    /// List questions, open ones first (oldest first), then the rest (the default).
    List {
        /// Only questions with this status.
        #[arg(long, value_name = "STATUS", value_parser = status_parser())]
        status: Option<QuestionStatus>,
    },
    /// Show one question in full: text, choices, context, answer.
    Show {
        /// The question's id: whole, or a unique part (the short id `cipc questions` shows).
        id: String,
    },
    /// Wait for a question's answer and print it, like `cipc ask` (exit 1
    /// if it was cancelled or expired, 124 on timeout).
    Wait {
        /// The question's id: whole, or a unique part (the short id `cipc questions` shows).
        id: String,
        /// Stop waiting after this long (exit 124; the question stays open).
        #[arg(long, default_value = "30m", value_parser = humantime::parse_duration, value_name = "DURATION")]
        timeout: Duration,
        /// Wait as long as it takes.
        #[arg(long, conflicts_with = "timeout")]
        forever: bool,
    },
    /// Withdraw an open question (its asker's wait ends with exit 1).
    Cancel {
        /// The question's id: whole, or a unique part (the short id `cipc questions` shows).
        id: String,
    },
}

impl QuestionsCmd {
    /// The subcommand's name, as typed.
    pub fn name(&self) -> &'static str {
        match self {
            QuestionsCmd::List { .. } => "list",
            QuestionsCmd::Show { .. } => "show",
            QuestionsCmd::Wait { .. } => "wait",
            QuestionsCmd::Cancel { .. } => "cancel",
        }
    }
}

/// `--status`: one of the wire names, offered to shell completion.
fn status_parser() -> impl clap::builder::TypedValueParser<Value = QuestionStatus> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(<QuestionStatus as strum::VariantNames>::VARIANTS)
        .try_map(|s| QuestionStatus::parse(&s))
}

/// The question's text and choices, checked for what the broker would refuse
/// anyway, so the error can name the flag.
fn check_ask(text: &str, choices: &[String]) -> Result<(), CliError> {
    if text.trim().is_empty() {
        return Err(CliError::usage(
            "the question is empty; ask one clear question, e.g. cipc ask \"Deploy now?\" --choice yes --choice no",
        ));
    }
    for (i, c) in choices.iter().enumerate() {
        if c.trim().is_empty() {
            return Err(CliError::usage(format!(
                "--choice number {} is empty; give each choice some text, or leave --choice out for a free-text answer",
                i + 1
            )));
        }
        if choices[..i].iter().any(|o| o.trim() == c.trim()) {
            return Err(CliError::usage(format!(
                "--choice {:?} is given twice; each choice must be different",
                c.trim()
            )));
        }
    }
    Ok(())
}

/// Runs `cipc ask`; returns the exit code.
pub async fn ask(args: AskArgs, ctx: Ctx) -> Result<Exit, CliError> {
    let json = args.client.json;
    let out = ctx.out;
    check_ask(&args.text, &args.choices)?;
    let context = args
        .context
        .as_deref()
        .map(|c| read_json_arg(c, "--context"))
        .transpose()?;
    let req = AskRequest {
        text: args.text,
        choices: (!args.choices.is_empty()).then_some(args.choices),
        context,
        from: args.from,
        ttl: args.ttl.map(millis),
        kind: None,
    };
    let r = ctx.client.ask(&req).await?;
    let id = r.question.id.to_string();
    if args.no_wait {
        if out.json {
            out.json(&r)?;
        } else {
            out.line(&id)?;
            if out.spinner {
                eprintln!("cipc ask: collect the answer with `cipc questions wait {id}`");
            }
        }
        return Ok(exit::OK);
    }
    if out.spinner {
        eprintln!(
            "cipc ask: asked question {id}; answer it in the dashboard ({}/dashboard) or with `cipc answer {id} TEXT`",
            ctx.client.base_url()
        );
    }
    let timeout = args.timeout.unwrap_or(DEFAULT_TIMEOUT);
    await_answer(&ctx, "ask", &id, timeout, args.forever, json).await
}

/// Waits for question `id` to be answered (or to end otherwise) and prints
/// the outcome: the answer alone (what a script wants, so even when stdout
/// is not a terminal), or the question document with an explicit `--json`.
/// Returns 0 when answered, 1 when cancelled or expired, 124 on timeout.
async fn await_answer(
    ctx: &Ctx,
    group: &str,
    id: &str,
    timeout: Duration,
    forever: bool,
    json: bool,
) -> Result<Exit, CliError> {
    let out = ctx.out;
    let until = deadline(timeout, forever);
    let spinner = out.spinner("waiting for a person to answer (in the dashboard)".to_string());
    let client = &ctx.client;
    let waited = long_poll(until, &spinner, "waiting for the answer", |ms| async move {
        let r = client.wait_question(id, ms).await?;
        let pending = r.timed_out || r.question.status == QuestionStatus::Open;
        Ok((r, pending))
    })
    .await?;
    drop(spinner);
    let (r, timed_out) = match waited {
        Waited::Done(r) => (r, false),
        Waited::TimedOut(mut r) => {
            r.timed_out = true;
            (r, true)
        }
    };
    let q = &r.question;
    if json {
        out.json(&r)?;
    } else if let (QuestionStatus::Answered, Some(answer)) = (q.status, &q.answer) {
        out.line(answer)?;
    }
    if timed_out {
        eprintln!(
            "cipc {group}: no answer to question {id} within {}; it is still open: \
             keep waiting with `cipc questions wait {id}`, or withdraw it with `cipc questions cancel {id}`",
            human_duration(timeout)
        );
        return Ok(exit::TIMED_OUT);
    }
    match q.status {
        QuestionStatus::Answered => Ok(exit::OK),
        QuestionStatus::Cancelled => {
            eprintln!("cipc {group}: question {id} was cancelled before anyone answered it");
            Ok(exit::ERROR)
        }
        QuestionStatus::Expired => {
            let when = q.expires_at.map(|t| format!(" at {t}")).unwrap_or_default();
            eprintln!(
                "cipc {group}: question {id} expired unanswered (its ttl ran out{when}); ask again, with a longer --ttl or none"
            );
            Ok(exit::ERROR)
        }
        // Not reachable: a wait that is done has a closed question.
        QuestionStatus::Open => Ok(exit::TIMED_OUT),
    }
}

/// Runs `cipc answer`; returns the exit code.
pub async fn answer(args: AnswerArgs, ctx: Ctx) -> Result<Exit, CliError> {
    let out = ctx.out;
    if args.text.trim().is_empty() {
        return Err(CliError::usage(
            "the answer is empty; give it as the second argument, e.g. cipc answer ID yes",
        ));
    }
    let id = resolve_id(&ctx, &args.id).await?;
    let req = AnswerRequest {
        answer: args.text,
        by: args.by,
        note: args.note,
    };
    let r = ctx.client.answer(&id, &req).await?;
    if out.json {
        out.json(&r)?;
    } else {
        let q = &r.question;
        out.line(&format!(
            "answered question {} from {} ({}): {}",
            q.id,
            q.from,
            compact(&serde_json::Value::String(q.text.clone()), 60),
            q.answer.as_deref().unwrap_or_default()
        ))?;
    }
    Ok(exit::OK)
}

/// Runs `cipc questions ...`; returns the exit code.
pub async fn run(args: QuestionsArgs, ctx: Ctx) -> Result<Exit, CliError> {
    let json = args.client.json;
    let out = ctx.out;
    let cmd = args.cmd.unwrap_or(QuestionsCmd::List { status: None });
    if args.status.is_some() && !matches!(cmd, QuestionsCmd::List { .. }) {
        return Err(CliError::usage(
            "--status only filters the list: use `cipc questions --status open` (or `cipc questions list --status open`)",
        ));
    }
    match cmd {
        QuestionsCmd::List { status } => {
            let status = status.or(args.status);
            let r = ctx.client.questions(status).await?;
            if out.json {
                out.json(&r)?;
            } else if r.questions.is_empty() {
                out.line(&match status {
                    Some(s) => format!("no {} questions", s.as_str()),
                    None => "no questions yet; agents ask with `cipc ask TEXT`".to_string(),
                })?;
            } else {
                out.table(question_table(&out, &r.questions))?;
            }
        }
        QuestionsCmd::Show { id } => {
            let id = resolve_id(&ctx, &id).await?;
            let r = ctx.client.question(&id).await?;
            if out.json {
                out.json(&r)?;
            } else {
                show_question(&out, &r.question)?;
            }
        }
        QuestionsCmd::Wait {
            id,
            timeout,
            forever,
        } => {
            let id = resolve_id(&ctx, &id).await?;
            return await_answer(&ctx, "questions wait", &id, timeout, forever, json).await;
        }
        QuestionsCmd::Cancel { id } => {
            let id = resolve_id(&ctx, &id).await?;
            let r = ctx.client.cancel_question(&id).await?;
            if out.json {
                out.json(&r)?;
            } else {
                out.line(&format!(
                    "cancelled question {} from {}",
                    r.question.id, r.question.from
                ))?;
            }
        }
    }
    Ok(exit::OK)
}

/// A question id as the broker wants it: a whole id as given, or the one
/// question a part of an id names (the short id `cipc questions` shows).
async fn resolve_id(ctx: &Ctx, given: &str) -> Result<String, CliError> {
    super::resolve_id(ctx, given, super::IdKind::Question).await
}

/// What the CHOICES/ANSWER column says about a question.
fn choices_or_answer(q: &Question) -> String {
    match (q.status, &q.answer) {
        (QuestionStatus::Answered, Some(a)) => {
            let by = q.answered_by.as_deref().unwrap_or("someone");
            format!(
                "{} (by {by})",
                compact(&serde_json::Value::String(a.clone()), 60)
            )
        }
        (QuestionStatus::Open, _) => match &q.choices {
            Some(cs) => cs.join(" | "),
            None => "(any text)".to_string(),
        },
        _ => String::new(),
    }
}

/// The questions table, in the broker's order (open ones first).
pub fn question_table(out: &Output, questions: &[Question]) -> comfy_table::Table {
    let mut t = out.new_table(&["ID", "FROM", "STATUS", "QUESTION", "CHOICES/ANSWER", "AGE"]);
    for q in questions {
        t.add_row(vec![
            comfy_table::Cell::new(short_id(q.id)),
            comfy_table::Cell::new(&q.from),
            out.status_cell(q.status.as_str()),
            comfy_table::Cell::new(compact(&serde_json::Value::String(q.text.clone()), 80)),
            comfy_table::Cell::new(choices_or_answer(q)),
            comfy_table::Cell::new(ago(q.created_at)),
        ]);
    }
    t
}

fn show_question(out: &Output, q: &Question) -> Result<(), CliError> {
    let mut t = out.new_table(&["FIELD", "VALUE"]);
    t.add_row(vec!["id".to_string(), q.id.to_string()]);
    t.add_row(vec!["from".to_string(), q.from.clone()]);
    t.add_row(vec![
        comfy_table::Cell::new("status"),
        out.status_cell(q.status.as_str()),
    ]);
    t.add_row(vec!["question".to_string(), q.text.clone()]);
    t.add_row(vec![
        "choices".to_string(),
        q.choices
            .as_ref()
            .map_or_else(|| "(any text)".to_string(), |cs| cs.join(" | ")),
    ]);
    if let Some(c) = &q.context {
        t.add_row(vec![
            "context".to_string(),
            serde_json::to_string_pretty(c).unwrap_or_default(),
        ]);
    }
    t.add_row(vec![
        "asked".to_string(),
        format!("{} ({})", q.created_at, ago(q.created_at)),
    ]);
    if let Some(at) = q.expires_at {
        t.add_row(vec!["expires".to_string(), at.to_string()]);
    }
    if let Some(a) = &q.answer {
        t.add_row(vec!["answer".to_string(), a.clone()]);
    }
    if let Some(by) = &q.answered_by {
        t.add_row(vec!["answered by".to_string(), by.clone()]);
    }
    if let Some(at) = q.answered_at {
        let what = match q.status {
            QuestionStatus::Cancelled => "cancelled",
            QuestionStatus::Expired => "expired",
            _ => "answered",
        };
        t.add_row(vec![what.to_string(), format!("{at} ({})", ago(at))]);
    }
    if q.status == QuestionStatus::Open {
        t.add_row(vec![
            "to answer".to_string(),
            format!("cipc answer {} TEXT", q.id),
        ]);
    }
    out.table(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ask_checks_name_the_flag() {
        assert!(check_ask("Deploy?", &["yes".into(), "no".into()]).is_ok());
        assert!(check_ask("Deploy?", &[]).is_ok());
        let e = check_ask("  ", &[]).unwrap_err();
        assert_eq!(e.code, exit::USAGE);
        let e = check_ask("Deploy?", &["yes".into(), " ".into()]).unwrap_err();
        assert!(e.message.unwrap().contains("--choice number 2 is empty"));
        let e = check_ask("Deploy?", &["yes".into(), "yes ".into()]).unwrap_err();
        assert!(e.message.unwrap().contains("given twice"));
    }

    #[test]
    fn the_answer_column_says_what_a_person_needs() {
        let mut q = Question {
            id: uuid::Uuid::now_v7(),
            from: "backend".into(),
            text: "Deploy?".into(),
            choices: Some(vec!["yes".into(), "no".into()]),
            context: None,
            status: QuestionStatus::Open,
            created_at: crate::time::Timestamp::now(),
            expires_at: None,
            answer: None,
            answered_by: None,
            answered_at: None,
            origin: None,
            kind: Default::default(),
            peer: None,
            note: None,
        };
        assert_eq!(choices_or_answer(&q), "yes | no");
        q.status = QuestionStatus::Answered;
        q.answer = Some("yes".into());
        q.answered_by = Some("alice".into());
        assert_eq!(choices_or_answer(&q), "yes (by alice)");
        q.status = QuestionStatus::Cancelled;
        assert_eq!(choices_or_answer(&q), "");
    }
}
