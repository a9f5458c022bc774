//! `cipc completions` and `cipc man`: generated from the argument definitions,
//! so they can never disagree with `--help`.
//!
//! The results are checked into `completions/` and `man/`; `tests/cli_system.rs`
//! fails when they are stale and rewrites them with `UPDATE_GENERATED=1`.

use super::Exit;
use super::{exit, Cli};
use clap::{Args, CommandFactory, ValueEnum};
use clap_complete::Shell;
use std::path::PathBuf;

/// Flags of `cipc completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to generate for.
    #[arg(value_enum)]
    pub shell: ShellName,
}

/// The shells `cipc completions` supports.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ShellName {
    /// Bash (source it, or put it in /etc/bash_completion.d/).
    Bash,
    /// Zsh (save as _cipc in a directory on $fpath).
    Zsh,
    /// Fish (save as ~/.config/fish/completions/cipc.fish).
    Fish,
    /// Elvish.
    Elvish,
    /// PowerShell.
    Powershell,
}

impl ShellName {
    fn shell(self) -> Shell {
        match self {
            ShellName::Bash => Shell::Bash,
            ShellName::Zsh => Shell::Zsh,
            ShellName::Fish => Shell::Fish,
            ShellName::Elvish => Shell::Elvish,
            ShellName::Powershell => Shell::PowerShell,
        }
    }

    /// The file name the checked-in script has under `completions/`.
    pub fn file_name(self) -> &'static str {
        match self {
            ShellName::Bash => "cipc.bash",
            ShellName::Zsh => "_cipc",
            ShellName::Fish => "cipc.fish",
            ShellName::Elvish => "cipc.elv",
            ShellName::Powershell => "_cipc.ps1",
        }
    }
}

/// Flags of `cipc man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write cipc.1 and one page per subcommand (cipc-peers.1, ...) into DIR
    /// instead of printing cipc.1.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Prints the completion script; returns the exit code.
pub fn completions(args: CompletionsArgs) -> Exit {
    let mut cmd = Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(args.shell.shell(), &mut cmd, "cipc", &mut buf);
    write_stdout(&buf)
}

/// Prints the man page or writes all pages; returns the exit code.
pub fn man(args: ManArgs) -> Exit {
    let cmd = Cli::command();
    if let Some(dir) = args.dir {
        if let Err(e) =
            std::fs::create_dir_all(&dir).and_then(|_| clap_mangen::generate_to(cmd, &dir))
        {
            eprintln!(
                "cipc man: cannot write the man pages into {}: {e}",
                dir.display()
            );
            return exit::ERROR;
        }
        return exit::OK;
    }
    let mut buf = Vec::new();
    // The same page `--dir` writes (clap_mangen leaves out the `help` subcommand there).
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    if let Err(e) = clap_mangen::Man::new(cmd).render(&mut buf) {
        eprintln!("cipc man: cannot render the man page: {e}");
        return exit::ERROR;
    }
    write_stdout(&buf)
}

fn write_stdout(buf: &[u8]) -> Exit {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(buf).and_then(|_| out.flush()) {
        Ok(()) => exit::OK,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::OK,
        Err(e) => {
            eprintln!("cipc: cannot write to stdout: {e}");
            exit::ERROR
        }
    }
}
