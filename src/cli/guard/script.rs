//! What `cipc guard install` writes into a pre-commit hook and what
//! `cipc guard remove` takes out, as pure functions on the hook's text, so
//! every merge is unit-tested without a repository.
//!
//! cipc's part is one block between two marker lines, placed right after
//! the shebang so it runs before anything in the existing script can `exit`.
//! Everything outside the block is the user's and stays byte for byte.
//! A hook that is not a POSIX shell script (a binary, Python, Node) cannot
//! take a block: install moves it aside to [`CHAINED`] and writes a shell
//! hook whose block ends by `exec`ing it, so it still runs with the same
//! arguments and stdin, and its exit status is the commit's.

/// The first line of cipc's block.
pub const BEGIN: &str =
    "# >>> cipc guard >>> added by `cipc guard install`; `cipc guard remove` takes it out";
/// The last line of cipc's block.
pub const END: &str = "# <<< cipc guard <<<";
/// What the start of [`BEGIN`] is recognised by (the rest may change between versions).
const BEGIN_MARK: &str = "# >>> cipc guard >>>";
/// What a moved-aside hook is called, beside `pre-commit`.
pub const CHAINED: &str = "pre-commit.cipc-chained";
/// The shebang of a hook cipc creates.
pub const SHEBANG: &str = "#!/bin/sh";

/// The line of the block that runs the moved-aside hook.
const CHAIN_LINE: &str = "exec \"$(dirname \"$0\")/pre-commit.cipc-chained\" \"$@\"";

/// A hook file cipc cannot merge with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    /// A begin marker without its end (or the other way round): edited by hand.
    #[error("its cipc block is broken (a marker line without its pair); take the lines between `# >>> cipc guard >>>` and `# <<< cipc guard <<<` out by hand, then run this again")]
    BrokenBlock,
}

/// cipc's block: check the staged paths; only a definite refusal (exit 1)
/// stops the commit, so a broker that is down, an older cipc, or one
/// missing from PATH (a GUI's git) lets it through with a warning. With
/// `chain`, it ends by running the moved-aside hook.
pub fn block(chain: bool) -> String {
    let mut lines = vec![
        BEGIN,
        "# Refuses a commit whose staged paths another session leases (`cipc guard check`).",
        "if command -v cipc >/dev/null 2>&1; then",
        "  if cipc guard check; then :; else [ \"$?\" -ne 1 ] || exit 1; fi",
        "else",
        "  echo \"cipc guard: cipc is not on PATH; this commit was not checked against leases\" >&2",
        "fi",
    ];
    if chain {
        lines.push(CHAIN_LINE);
    }
    lines.push(END);
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// Whether a hook's text is a script cipc can add its block to: a shebang
/// naming a POSIX-compatible shell (directly or through `env`).
pub fn is_shell(text: &str) -> bool {
    let Some(first) = text.lines().next() else {
        return false;
    };
    let Some(cmd) = first.strip_prefix("#!") else {
        return false;
    };
    let mut words = cmd.split_whitespace();
    let Some(program) = words.next() else {
        return false;
    };
    let name = |p: &str| p.rsplit('/').next().unwrap_or(p).to_string();
    let mut interpreter = name(program);
    if interpreter == "env" {
        // `#!/usr/bin/env -S bash -e` or `#!/usr/bin/env bash`.
        interpreter = words
            .find(|w| !w.starts_with('-'))
            .map(name)
            .unwrap_or_default();
    }
    matches!(
        interpreter.as_str(),
        "sh" | "bash" | "dash" | "zsh" | "ksh" | "mksh" | "ash" | "yash"
    )
}

/// Where cipc's block is: the index of its first and last line.
fn find_block(lines: &[&str]) -> Result<Option<(usize, usize)>, ScriptError> {
    let begin = lines
        .iter()
        .position(|l| l.trim_end().starts_with(BEGIN_MARK));
    let end = lines.iter().position(|l| l.trim_end() == END);
    match (begin, end) {
        (None, None) => Ok(None),
        (Some(b), Some(e)) if b < e => Ok(Some((b, e))),
        _ => Err(ScriptError::BrokenBlock),
    }
}

/// Whether a hook's text holds cipc's block and it chains a moved-aside hook.
pub fn chains(text: &str) -> bool {
    let lines: Vec<&str> = text.lines().collect();
    match find_block(&lines) {
        Ok(Some((b, e))) => lines[b..e].iter().any(|l| l.trim() == CHAIN_LINE),
        _ => false,
    }
}

/// The hook's text with cipc's block in it: a new hook (`None`) is a
/// shebang and the block; a shell hook gets the block after its shebang,
/// or its block brought up to date (installing twice changes nothing).
/// A block that chains keeps chaining; `chain` asks for it anew.
pub fn with_block(text: Option<&str>, chain: bool) -> Result<String, ScriptError> {
    let Some(text) = text else {
        return Ok(format!("{SHEBANG}\n{}", block(chain)));
    };
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let bare: Vec<&str> = lines
        .iter()
        .map(|l| l.trim_end_matches(['\n', '\r']))
        .collect();
    if let Some((b, e)) = find_block(&bare)? {
        let chain = chain || bare[b..e].iter().any(|l| l.trim() == CHAIN_LINE);
        let mut out: String = lines[..b].concat();
        out.push_str(&block(chain));
        out.push_str(&lines[e + 1..].concat());
        return Ok(out);
    }
    // After the shebang (which may lack its newline in a one-line file).
    let mut out = String::new();
    let mut rest = lines.iter();
    if let Some(first) = rest.next() {
        out.push_str(first);
        if !first.ends_with('\n') {
            out.push('\n');
        }
    }
    out.push_str(&block(chain));
    for l in rest {
        out.push_str(l);
    }
    Ok(out)
}

/// What taking cipc's block out of a hook leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    /// There was no block: nothing to do.
    NoBlock,
    /// Only a shebang (and blank lines) is left: cipc made the file, so
    /// remove deletes it.
    Nothing,
    /// The user's script, as it was before install.
    Text(String),
}

/// The hook's text without cipc's block (see [`Removed`]).
pub fn without_block(text: &str) -> Result<Removed, ScriptError> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let bare: Vec<&str> = lines
        .iter()
        .map(|l| l.trim_end_matches(['\n', '\r']))
        .collect();
    let Some((b, e)) = find_block(&bare)? else {
        return Ok(Removed::NoBlock);
    };
    let rest = [&lines[..b], &lines[e + 1..]].concat().concat();
    let left: Vec<&str> = rest.lines().filter(|l| !l.trim().is_empty()).collect();
    if left.is_empty() || (left.len() == 1 && left[0].starts_with("#!")) {
        return Ok(Removed::Nothing);
    }
    Ok(Removed::Text(rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    const USERS: &str = "#!/bin/bash\nset -e\ncargo fmt --check\nexit 0\n";

    #[test]
    fn shells_are_told_from_other_programs() {
        for shell in [
            "#!/bin/sh\n",
            "#!/bin/bash -e\nx",
            "#!/usr/bin/env bash\n",
            "#!/usr/bin/env -S zsh -f\n",
            "#! /bin/dash\n",
        ] {
            assert!(is_shell(shell), "{shell:?}");
        }
        for other in [
            "#!/usr/bin/env python3\n",
            "#!/usr/bin/node\n",
            "echo no shebang\n",
            "\u{7f}ELF",
            "",
        ] {
            assert!(!is_shell(other), "{other:?}");
        }
    }

    #[test]
    fn a_new_hook_is_a_shebang_and_the_block_and_removing_it_leaves_nothing() {
        let made = with_block(None, false).unwrap();
        assert!(
            made.starts_with("#!/bin/sh\n# >>> cipc guard >>>"),
            "{made}"
        );
        assert!(made.contains("cipc guard check") && made.ends_with(&format!("{END}\n")));
        assert!(!chains(&made));
        assert_eq!(with_block(Some(&made), false).unwrap(), made, "idempotent");
        assert_eq!(without_block(&made).unwrap(), Removed::Nothing);
    }

    #[test]
    fn an_existing_script_keeps_every_byte_and_the_block_runs_first() {
        let merged = with_block(Some(USERS), false).unwrap();
        let expected = format!(
            "#!/bin/bash\n{}set -e\ncargo fmt --check\nexit 0\n",
            block(false)
        );
        assert_eq!(merged, expected);
        assert_eq!(
            with_block(Some(&merged), false).unwrap(),
            merged,
            "idempotent"
        );
        assert_eq!(
            without_block(&merged).unwrap(),
            Removed::Text(USERS.to_string())
        );
        // CRLF endings, and a one-line script without a final newline.
        let crlf = "#!/bin/sh\r\necho hi\r\n";
        let merged = with_block(Some(crlf), false).unwrap();
        assert!(
            merged.starts_with("#!/bin/sh\r\n# >>> cipc guard"),
            "{merged:?}"
        );
        assert_eq!(without_block(&merged).unwrap(), Removed::Text(crlf.into()));
        let merged = with_block(Some("#!/bin/sh"), false).unwrap();
        assert_eq!(merged, format!("#!/bin/sh\n{}", block(false)));
    }

    #[test]
    fn an_old_block_is_brought_up_to_date_in_place() {
        let old = "#!/bin/sh\n# >>> cipc guard >>> v0\ncipc guard check || exit 1\n# <<< cipc guard <<<\nmake lint\n";
        let merged = with_block(Some(old), false).unwrap();
        assert_eq!(merged, format!("#!/bin/sh\n{}make lint\n", block(false)));
    }

    #[test]
    fn a_chaining_block_keeps_chaining() {
        let made = with_block(None, true).unwrap();
        assert!(chains(&made));
        assert!(made.contains("exec \"$(dirname \"$0\")/pre-commit.cipc-chained\" \"$@\"\n# <<<"));
        assert_eq!(with_block(Some(&made), false).unwrap(), made);
        assert_eq!(without_block(&made).unwrap(), Removed::Nothing);
    }

    #[test]
    fn a_broken_block_is_refused_and_no_block_is_nothing_to_remove() {
        let broken = format!("#!/bin/sh\n{BEGIN}\ncipc guard check\n");
        assert_eq!(
            with_block(Some(&broken), false),
            Err(ScriptError::BrokenBlock)
        );
        assert_eq!(without_block(&broken), Err(ScriptError::BrokenBlock));
        let upside_down = format!("#!/bin/sh\n{END}\n{BEGIN}\n");
        assert_eq!(without_block(&upside_down), Err(ScriptError::BrokenBlock));
        assert_eq!(without_block(USERS).unwrap(), Removed::NoBlock);
    }
}
