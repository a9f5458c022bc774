//! How client subcommands print: tables and short lines for people, exactly
//! one JSON document per result for scripts.
//!
//! The choice is made once per process: `--json`, or stdout not being a
//! terminal, means JSON (so `| jq` always works); `--table` forces the human
//! form into a pipe (`| less`). Colour only when stdout is a terminal and
//! `NO_COLOR` is unset. Spinners go to stderr, and only when it is a terminal.

use super::CliError;
use crate::time::Timestamp;
use comfy_table::{presets, Attribute, Cell, Color, ContentArrangement, Table};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// The output policy of one `cipc` invocation.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// Print JSON documents instead of tables.
    pub json: bool,
    /// Pretty-print JSON (a person is looking at it: `--json` on a terminal).
    pub pretty: bool,
    /// Use ANSI colours.
    pub color: bool,
    /// Show spinners on stderr.
    pub spinner: bool,
}

impl Output {
    /// Decides from the flags, the terminals and `NO_COLOR`.
    pub fn detect(json: bool, table: bool) -> Output {
        let stdout_tty = std::io::stdout().is_terminal();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let json = json || (!stdout_tty && !table);
        Output {
            json,
            pretty: json && stdout_tty,
            color: stdout_tty && !no_color,
            spinner: std::io::stderr().is_terminal(),
        }
    }

    /// Prints one API object as one JSON document.
    pub fn json<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), CliError> {
        let text = if self.pretty {
            serde_json::to_string_pretty(value)
        } else {
            serde_json::to_string(value)
        }
        .map_err(|e| CliError::error(format!("cannot render the answer as JSON: {e}")))?;
        self.line(&text)
    }

    /// Prints one line to stdout. A closed pipe (`| head`) ends the program
    /// quietly instead of panicking.
    pub fn line(&self, text: &str) -> Result<(), CliError> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{text}")
            .and_then(|_| out.flush())
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    CliError::quiet(super::exit::OK)
                } else {
                    CliError::error(format!("cannot write to stdout: {e}"))
                }
            })
    }

    /// Prints a table (a person is reading), kubectl-style: no borders, no
    /// leading or trailing blanks.
    pub fn table(&self, mut table: Table) -> Result<(), CliError> {
        for c in table.column_iter_mut() {
            c.set_padding((0, 2));
        }
        self.line(&table.trim_fmt())
    }

    /// A new table with a header row, in the house style.
    pub fn new_table(&self, header: &[&str]) -> Table {
        let mut t = Table::new();
        t.load_style(presets::NOTHING);
        if self.color {
            t.enforce_styling();
        } else {
            t.force_no_tty();
        }
        // Wrap to the terminal only when its width is known and usable (a
        // pty without a size reports 0, which would squash every column).
        if t.width().is_some_and(|w| w >= 40) {
            t.set_content_arrangement(ContentArrangement::Dynamic);
        }
        t.set_header(
            header
                .iter()
                .map(|h| Cell::new(h).add_attribute(Attribute::Bold))
                .collect::<Vec<_>>(),
        );
        t
    }

    /// A cell coloured by what a status word means (green good, yellow
    /// in-between, red bad, grey gone).
    pub fn status_cell(&self, word: &str) -> Cell {
        self.status_cell_as(word, word)
    }

    /// A cell showing `text`, coloured by what the status `word` means
    /// (`text` says more, e.g. "acked (late)").
    pub fn status_cell_as(&self, word: &str, text: &str) -> Cell {
        let cell = Cell::new(text);
        if !self.color {
            return cell;
        }
        match word {
            "online" | "acked" | "yes" | "emitted" | "answered" => cell.fg(Color::Green),
            "stale" | "pending" | "delivered" | "open" => cell.fg(Color::Yellow),
            "failed" | "expired" | "overdue" => cell.fg(Color::Red),
            "offline" | "cancelled" | "no" => cell.fg(Color::DarkGrey),
            _ => cell,
        }
    }

    /// Colours a short word for a human line (no-op without colour).
    pub fn paint(&self, word: &str, good: bool) -> String {
        if !self.color {
            return word.to_string();
        }
        let code = if good { "32" } else { "31" };
        format!("\x1b[{code}m{word}\x1b[0m")
    }

    /// A spinner on stderr showing `message` and the elapsed time, or a
    /// hidden one when stderr is not a terminal.
    pub fn spinner(&self, message: String) -> Spinner {
        if !self.spinner {
            return Spinner(None);
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        bar.set_message(message);
        bar.enable_steady_tick(Duration::from_millis(100));
        Spinner(Some(bar))
    }
}

/// A spinner that disappears when dropped.
pub struct Spinner(Option<ProgressBar>);

impl Spinner {
    /// Tells the user something worth knowing mid-wait (the broker went
    /// away): in the spinner on a terminal, else as one line on stderr.
    pub fn note(&self, message: String) {
        match &self.0 {
            Some(b) => b.set_message(message),
            None => eprintln!("{}: {message}", super::prefix()),
        }
    }

    /// Prints one line on stderr mid-wait, above the spinner on a terminal
    /// (which goes on spinning).
    pub fn println(&self, line: &str) {
        match &self.0 {
            Some(b) => b.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    /// Changes the spinner's text (e.g. to say the broker is being retried).
    pub fn set_message(&self, message: String) {
        if let Some(b) = &self.0 {
            b.set_message(message);
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

/// "3m 20s ago" for a past time, "just now" under a second.
pub fn ago(t: Timestamp) -> String {
    let age = t.age(Timestamp::now());
    if age < Duration::from_secs(1) {
        return "just now".into();
    }
    let secs = age.as_secs();
    // Keep it glanceable: at most two units.
    let rounded = if secs >= 3600 { secs - secs % 60 } else { secs };
    let text = humantime::format_duration(Duration::from_secs(rounded)).to_string();
    let short: Vec<&str> = text.split(' ').take(2).collect();
    format!("{} ago", short.join(" "))
}

/// The last 8 hex digits of an id, for tables: UUID v7 ids begin with their
/// timestamp, so the random tail is what tells neighbours apart.
pub fn short_id(id: uuid::Uuid) -> String {
    let hex = id.simple().to_string();
    hex[hex.len() - 8..].to_string()
}

/// A compact one-line rendering of any JSON value, cut to `max` characters.
pub fn compact(value: &serde_json::Value, max: usize) -> String {
    let s = match value {
        serde_json::Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    if s.chars().count() > max {
        let cut: String = s.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        s
    }
}

/// A duration for people: "30s", "5m", "1h 30m".
pub fn human_duration(d: Duration) -> String {
    let d = if d >= Duration::from_secs(1) {
        Duration::from_secs(d.as_secs())
    } else {
        Duration::from_millis(d.as_millis() as u64)
    };
    humantime::format_duration(d).to_string()
}
