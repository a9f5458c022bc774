//! The agent process that runs a hook (Claude Code, Codex): how a hook
//! finds it and tells whether it still runs, so nothing a hook holds open
//! (a wait for orders, a relayed permission prompt) outlives its session.
//! Read from /proc on Linux; elsewhere the host is assumed to run.

/// This process's parent.
pub(crate) fn parent_pid() -> u32 {
    #[cfg(unix)]
    {
        std::os::unix::process::parent_id()
    }
    #[cfg(not(unix))]
    {
        0
    }
}

/// The process that runs the session's hooks: this hook's parent, or the
/// parent of the shell in between (an agent runs a hook's command line
/// through `sh -c`, which may or may not `exec` it).
pub(crate) fn hook_host() -> u32 {
    let parent = parent_pid();
    let comm = std::fs::read_to_string(format!("/proc/{parent}/comm")).unwrap_or_default();
    if !matches!(comm.trim(), "sh" | "bash" | "dash" | "zsh") {
        return parent;
    }
    std::fs::read_to_string(format!("/proc/{parent}/stat"))
        .ok()
        .and_then(|stat| {
            // pid (comm) state ppid ...: the comm may hold spaces.
            let after = stat.rsplit_once(')')?.1;
            after.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(parent)
}

/// Whether process `pid` still runs (Linux: /proc; elsewhere assumed).
pub(crate) fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}
