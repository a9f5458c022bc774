//! The `cipc` client subcommands, run as real processes (assert_cmd) against a
//! real broker started in-process on a free port.
//!
//! Waits in these tests use generous deadlines only as a safety net; nothing
//! asserts on timing.
//!
//! The `cipc ask` subcommand and its questions.

mod common;

use common::cli::*;
use serde_json::json;
use std::process::Stdio;

#[test]
fn ask_prints_the_answer_another_process_gave() {
    let b = Broker::start();
    let asker = b.connect("backend");
    let child = b
        .std_cipc()
        .envs(b.identity(&asker))
        .args(["ask", "Deploy to production?", "--choice", "yes"])
        .args(["-c", "no", "--context", r#"{"diff":"+1 -0"}"#])
        // No --table: in a script (stdout a pipe) the answer comes alone.
        .args(["--timeout", "50s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let q = open_question(&b);
    assert_eq!(q["text"], "Deploy to production?");
    assert_eq!(q["choices"], json!(["yes", "no"]));
    assert_eq!(q["context"], json!({"diff": "+1 -0"}));
    assert_eq!(q["from"], "backend", "asked as CIPC_PEER's role");
    let id = q["id"].as_str().unwrap().to_string();

    // The list shows it, open, with its choices.
    let table = stdout_text(b.cipc().args(["questions", "--table"]));
    assert!(
        table.contains("Deploy to production?") && table.contains("yes | no"),
        "{table}"
    );

    // An answer that is not a choice is refused, naming the choices.
    let a = b.cipc().args(["answer", &id, "maybe"]).assert().code(1);
    assert!(a.get_output().stdout.is_empty());
    let err = stderr_of(&a);
    assert!(
        err.starts_with("cipc answer: ") && err.contains(r#""yes", "no""#) && err.contains("maybe"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    // The short id from the table answers it too.
    let short = &id[id.len() - 8..];
    let v = stdout_json(b.cipc().args([
        "answer",
        short,
        "yes",
        "--by",
        "alice",
        "--note",
        "after the 5pm freeze",
    ]));
    assert_eq!(v["question"]["status"], "answered");
    assert_eq!(v["question"]["answeredBy"], "alice");
    assert_eq!(v["question"]["note"], "after the 5pm freeze");

    let out = wait_child(child, PROCESS_LIMIT);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "yes\n",
        "the answer alone"
    );

    // Answered: waiting again prints the same answer at once; --json the question.
    let again = stdout_text(b.cipc().args(["questions", "wait", &id]));
    assert_eq!(again, "yes\n");
    let v = stdout_json(b.cipc().args(["questions", "wait", &id, "--json"]));
    assert_eq!(v["question"]["answer"], "yes");
    assert!(v.get("timedOut").is_none(), "{v}");
    let shown = stdout_json(b.cipc().args(["questions", "show", &id]));
    assert_eq!(shown["question"]["status"], "answered");
    let table = stdout_text(b.cipc().args(["questions", "--table"]));
    assert!(
        table.contains("answered") && table.contains("yes (by alice)"),
        "{table}"
    );
    // A second answer is refused: it is already answered.
    let a = b.cipc().args(["answer", &id, "no"]).assert().code(1);
    assert!(
        stderr_of(&a).contains("already answered"),
        "{}",
        stderr_of(&a)
    );
}

#[test]
fn ask_without_an_answer_times_out_with_124_and_leaves_it_open() {
    let b = Broker::start();
    let a = b
        .cipc()
        .args(["ask", "Anyone there?", "--timeout", "1s", "--json"])
        .assert()
        .code(124);
    let v = parse(&a.get_output().stdout);
    assert_eq!(v["timedOut"], true);
    assert_eq!(v["question"]["status"], "open");
    let id = v["question"]["id"].as_str().unwrap();
    let err = stderr_of(&a);
    assert!(
        err.contains("still open") && err.contains(&format!("cipc questions wait {id}")),
        "{err}"
    );
    // `--no-wait` prints the id alone; `questions wait` times out the same way.
    let printed = stdout_text(b.cipc().args(["ask", "Later?", "--no-wait", "--table"]));
    let later = printed.trim();
    assert!(uuid_like(later), "{printed:?}");
    let a = b
        .cipc()
        .args(["questions", "wait", later, "--timeout", "200ms"])
        .assert()
        .code(124);
    assert!(stderr_of(&a).starts_with("cipc questions wait: no answer"));
    let open = stdout_json(b.cipc().args(["questions", "--status", "open"]));
    assert_eq!(open["questions"].as_array().unwrap().len(), 2, "{open}");
}

#[test]
fn a_cancelled_question_ends_ask_with_exit_1() {
    let b = Broker::start();
    let child = asking(&b, &["Which port?", "--timeout", "50s", "--json"]);
    let q = open_question(&b);
    let id = q["id"].as_str().unwrap();
    let v = stdout_json(b.cipc().args(["questions", "cancel", id]));
    assert_eq!(v["question"]["status"], "cancelled");
    let out = wait_child(child, PROCESS_LIMIT);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(parse(&out.stdout)["question"]["status"], "cancelled");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("question {id} was cancelled")),
        "{err}"
    );
    let listed = stdout_json(b.cipc().args(["questions", "--status", "cancelled"]));
    assert_eq!(listed["questions"][0]["id"], id);
}

#[test]
fn an_expired_question_ends_ask_with_exit_1() {
    let b = Broker::start_fast_sweep();
    let a = b
        .cipc()
        .args([
            "ask",
            "Quick?",
            "--ttl",
            "100ms",
            "--timeout",
            "50s",
            "--json",
        ])
        .assert()
        .code(1);
    assert_eq!(
        parse(&a.get_output().stdout)["question"]["status"],
        "expired"
    );
    assert!(
        stderr_of(&a).contains("expired unanswered"),
        "{}",
        stderr_of(&a)
    );
}

#[test]
fn bad_question_input_is_a_usage_error_naming_what_to_fix() {
    let b = Broker::start();
    for (args, says) in [
        (vec!["ask", "  "], "the question is empty"),
        (
            vec!["ask", "Deploy?", "-c", "yes", "-c", ""],
            "--choice number 2 is empty",
        ),
        (
            vec!["ask", "Deploy?", "-c", "yes", "-c", "yes"],
            "given twice",
        ),
        (vec!["ask", "Deploy?", "--ttl", "0s"], "longer than 0"),
        (
            vec!["ask", "Deploy?", "--ttl", "400days"],
            "at most 365 days",
        ),
        (vec!["ask", "Deploy?", "--context", "not json"], "--context"),
        (
            vec!["ask", "Deploy?", "--no-wait", "--timeout", "1s"],
            "cannot be used",
        ),
        (vec!["answer", "nope!", "yes"], "is not a question id"),
        (
            vec!["answer", "0190f0c4-0000-7000-8000-000000000000", " "],
            "the answer is empty",
        ),
        (
            vec!["questions", "--status", "open", "show", "abcd1234"],
            "--status only filters",
        ),
        (vec!["questions", "--status", "done"], "possible values"),
        (
            vec!["send", "x", "y", "--deadline", "soon"],
            "write a duration like",
        ),
    ] {
        let a = b.cipc().args(&args).assert().code(2);
        let err = stderr_of(&a);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    // No question has that short id.
    let a = b
        .cipc()
        .args(["answer", "abcd1234", "yes"])
        .assert()
        .code(1);
    assert!(
        stderr_of(&a).contains("no question id starts or ends with abcd1234"),
        "{}",
        stderr_of(&a)
    );
}
