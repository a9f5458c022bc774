//! How setup changes an agent's configuration files, the same way for
//! every agent: read (a missing or blank file is empty), change in memory,
//! write back atomically only when something changed, keep the file's
//! permissions, and delete a file that held nothing but cipc's entries.
//! A file that cannot be parsed is refused, never overwritten.

use crate::cli::CliError;
use serde_json::Value;
use std::fmt::Display;
use std::path::{Path, PathBuf};

/// What setup or remove did (or, in a dry run, would do) to one file.
#[derive(Debug, Clone)]
pub struct Change {
    /// The file.
    pub path: PathBuf,
    /// Its content changed.
    pub changed: bool,
    /// It held only what cipc added, so it was deleted.
    pub deleted: bool,
    /// What cipc keeps in it ("cipc hooks").
    pub what: &'static str,
    /// What a dry run shows cipc would add (`None`: it would remove).
    pub preview: Option<String>,
}

impl Change {
    /// Names what cipc keeps in the file, and what a dry run would add.
    pub fn labelled(mut self, what: &'static str, preview: Option<String>) -> Change {
        self.what = what;
        self.preview = preview;
        self
    }

    /// The lines that report this change to the person running setup.
    pub fn describe(&self, dry_run: bool) -> String {
        let (what, path) = (self.what, self.path.display());
        match (self.changed, dry_run, &self.preview) {
            (true, false, _) if self.deleted => {
                format!("deleted    {path} (it held only the {what})")
            }
            (true, true, _) if self.deleted => {
                format!("would delete {path} (it holds only the {what})")
            }
            (false, _, _) => format!("unchanged  {path} ({what})"),
            (true, false, _) => format!("updated    {path} ({what})"),
            (true, true, Some(p)) => {
                format!("would add to {path} ({what}), keeping everything else:\n{p}")
            }
            (true, true, None) => format!("would remove the {what} from {path}, and nothing else"),
        }
    }
}

/// Reads a text file; a missing one reads as empty.
pub fn read_text(path: &Path) -> Result<String, CliError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(CliError::error(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// Reads a JSON file (missing or blank: `{}`); a file that is not JSON is
/// refused, never overwritten.
pub fn read_json(path: &Path) -> Result<Value, CliError> {
    let text = read_text(path)?;
    if text.trim().is_empty() {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    serde_json::from_str(&text).map_err(|e| {
        CliError::error(format!(
            "{} is not valid JSON ({e}); fix it by hand first, nothing was changed",
            path.display()
        ))
    })
}

/// Reads a JSON file (missing: `{}`), applies `f`, and writes it back
/// atomically when it changed (unless `dry_run`). A file that `f` leaves
/// as an empty object is deleted instead when `may_delete`.
pub fn edit_json<E: Display>(
    path: &Path,
    dry_run: bool,
    may_delete: bool,
    f: impl FnOnce(&mut Value) -> Result<(), E>,
) -> Result<Change, CliError> {
    let mut doc = read_json(path)?;
    let original = doc.clone();
    f(&mut doc).map_err(|e| CliError::error(format!("{}: {e}", path.display())))?;
    let emptied = doc.as_object().is_some_and(serde_json::Map::is_empty);
    let text = if may_delete && emptied {
        None
    } else {
        let mut text = serde_json::to_string_pretty(&doc)
            .map_err(|e| CliError::error(format!("cannot write JSON: {e}")))?;
        text.push('\n');
        Some(text)
    };
    commit(path, dry_run, doc != original, text)
}

/// Writes `text` to `path` when `changed` (or deletes it when `text` is
/// `None`), unless `dry_run`; says what it did.
pub fn commit(
    path: &Path,
    dry_run: bool,
    changed: bool,
    text: Option<String>,
) -> Result<Change, CliError> {
    let deleted = changed && text.is_none();
    if changed && !dry_run {
        match text {
            None => std::fs::remove_file(path)
                .map_err(|e| CliError::error(format!("cannot delete {}: {e}", path.display())))?,
            Some(text) => write_atomically(path, &text)?,
        }
    }
    Ok(Change {
        path: path.to_path_buf(),
        changed,
        deleted,
        what: "",
        preview: None,
    })
}

/// Replaces `path` with `text` through a temporary file and a rename, so a
/// reader never sees half a file; the file's permissions are kept (an
/// agent's user configuration is often private).
pub fn write_atomically(path: &Path, text: &str) -> Result<(), CliError> {
    let fail = |e: std::io::Error| CliError::error(format!("cannot write {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let tmp = path.with_extension(format!("cipc-{}.tmp", std::process::id()));
    std::fs::write(&tmp, text).map_err(fail)?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(&tmp, meta.permissions());
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(e)
    })
}

/// The project directory setup works on: `dir`, or the current one,
/// canonical so that agents which key settings by path find it.
pub fn project_dir(dir: Option<&Path>) -> Result<PathBuf, CliError> {
    let project = match dir {
        Some(d) => d.to_path_buf(),
        None => std::env::current_dir()
            .map_err(|e| CliError::error(format!("cannot read the current directory: {e}")))?,
    };
    std::fs::canonicalize(&project)
        .map_err(|e| CliError::usage(format!("--dir {}: {e}", project.display())))
}

/// `$HOME`, or an error naming whose configuration could not be found.
pub fn home(agent: &str) -> Result<PathBuf, CliError> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| {
            CliError::error(format!(
                "HOME is not set, so {agent}'s user configuration cannot be found"
            ))
        })
}

/// The first executable called `name` in a directory of `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|f| is_executable(f))
}

fn is_executable(f: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(f).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        f.is_file()
    }
}

/// The `cipc` program hooks run: `given`, or `cipc` by name in a file the
/// team commits (it names no path of this machine), or this executable's
/// absolute path in a file that is only this user's. Also answers whether
/// `cipc` by name is missing from `PATH`, which setup warns about.
pub fn hook_program(given: Option<&str>, shared_file: bool) -> Result<(String, bool), CliError> {
    let program = match (given, shared_file) {
        (Some(p), _) => p.to_string(),
        (None, true) => "cipc".to_string(),
        (None, false) => std::env::current_exe()
            .map_err(|e| {
                CliError::error(format!(
                    "cannot find this executable ({e}); pass --cipc PATH"
                ))
            })?
            .to_string_lossy()
            .into_owned(),
    };
    let missing = program == "cipc" && find_on_path("cipc").is_none();
    Ok((program, missing))
}

/// The warning setup prints when the hooks name `cipc` and it is not on `PATH`.
pub fn not_on_path_warning() -> String {
    format!(
        "warning: `cipc` is not on PATH, so the hooks cannot run it; put it there (e.g. `cargo install --path .` or copy {} into a PATH directory), or pass --cipc PATH",
        std::env::current_exe().map_or_else(|_| "the binary".to_string(), |p| p.display().to_string())
    )
}
