//! What a hook can tell about the Claude Code process that runs it
//! (`CLAUDE_PID`, its parent): whether its session can be woken at all, and
//! whether it is ending, so the background waiter never holds Claude Code
//! up. Read from /proc on Linux (`ps` for the command line elsewhere).

/// Whether the Claude Code session running this hook can be woken later:
/// an interactive session, or one reading prompts as a stream
/// (`--input-format stream-json`), but not a one-shot `claude -p PROMPT`.
/// Read from the command line of the Claude Code process (`CLAUDE_PID`);
/// when it cannot be read, assume it can.
pub(crate) fn session_can_wake() -> bool {
    let Some(pid) = std::env::var("CLAUDE_PID")
        .ok()
        .filter(|p| p.chars().all(|c| c.is_ascii_digit()) && !p.is_empty())
    else {
        return true;
    };
    match claude_args(&pid) {
        Some(args) => can_wake(&args),
        None => true,
    }
}

/// Whether Claude Code's input ended: a session reading prompts from a pipe
/// (`--input-format stream-json`) ends when nobody can write to that pipe
/// any more, and Claude Code then waits up to 30 s for background hooks
/// before it exits; noticing it here lets the waiter go at once. Linux
/// only (/proc); `false` when it cannot be told (a terminal, a socket).
/// The processes of other users cannot be looked into and are assumed not
/// to feed the session (its host runs as the same user).
pub(crate) fn claude_input_closed() -> bool {
    let Some(pid) = std::env::var("CLAUDE_PID")
        .ok()
        .filter(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
    else {
        return false;
    };
    let Ok(target) = std::fs::read_link(format!("/proc/{pid}/fd/0")) else {
        return false;
    };
    let target = target.to_string_lossy().into_owned();
    if !target.starts_with("pipe:[") {
        return false;
    }
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    for proc_dir in procs.flatten() {
        let name = proc_dir.file_name();
        let Some(p) = name
            .to_str()
            .filter(|n| n.chars().all(|c| c.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(proc_dir.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let holds = std::fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy() == target);
            if !holds {
                continue;
            }
            let info = std::fs::read_to_string(format!(
                "/proc/{p}/fdinfo/{}",
                fd.file_name().to_string_lossy()
            ))
            .unwrap_or_default();
            let flags = info
                .lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .and_then(|f| u32::from_str_radix(f.trim(), 8).ok());
            match flags {
                // O_WRONLY or O_RDWR: someone can still write.
                Some(f) if f & 0o3 != 0 => return false,
                Some(_) => {}
                None => return false,
            }
        }
    }
    true
}

/// The arguments of process `pid`: /proc on Linux, else `ps`.
fn claude_args(pid: &str) -> Option<Vec<String>> {
    if let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) {
        return Some(
            raw.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect(),
        );
    }
    let out = std::process::Command::new("ps")
        .args(["-o", "args=", "-p", pid])
        .output()
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect()
    })
}

/// See [`session_can_wake`].
fn can_wake(args: &[String]) -> bool {
    let print = args.iter().any(|a| a == "-p" || a == "--print");
    let streamed = args
        .windows(2)
        .any(|w| w[0] == "--input-format" && w[1] == "stream-json")
        || args.iter().any(|a| a == "--input-format=stream-json");
    !print || streamed
}

/// Asks a process to end (SIGTERM) with the system's `kill`, so no unsafe
/// code is needed.
pub(crate) fn stop_process(pid: u32) {
    if pid == std::process::id() {
        return;
    }
    let _ = std::process::Command::new("kill")
        .arg(pid.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

#[cfg(test)]
mod tests {
    use super::can_wake;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn only_a_one_shot_print_run_cannot_be_woken() {
        assert!(can_wake(&args("claude")));
        assert!(can_wake(&args("claude --resume abc")));
        assert!(!can_wake(&args("claude -p hi --output-format stream-json")));
        assert!(!can_wake(&args("claude --print hi")));
        assert!(can_wake(&args(
            "claude -p --input-format stream-json --output-format stream-json --verbose"
        )));
        assert!(can_wake(&args("claude -p --input-format=stream-json")));
    }
}
