//! Which code base a path belongs to, and the name it has there: the two
//! things every lease and every check carries (`shared/API.md`, "Leases").
//!
//! Sessions on different machines, or in different directories of one
//! checkout, must name the same file the same way, so both are derived
//! from git rather than from where the session happens to stand:
//!
//! - the **repo** is the `origin` remote's URL, normalised so that the SSH,
//!   scp-like and HTTPS spellings of one remote agree
//!   (`git@github.com:Org/App.git`, `ssh://git@github.com/Org/App` and
//!   `https://user@GitHub.com/Org/App.git/` are all `github.com/Org/App`),
//!   else the name of the checkout's top-level directory;
//! - a **path** is made relative to the checkout's top level (`./` and
//!   `a/../b` resolved lexically, `/`-separated), and one outside the
//!   checkout is refused.
//!
//! git runs as a subprocess (`git rev-parse --show-toplevel`, `git config
//! --get remote.origin.url`): no git library, and exactly git's own answer,
//! worktrees and `GIT_DIR` included. [`normalize_remote`] and
//! [`normalize_pattern`] are pure, so their rules are unit-tested in tables.
//! Used by `cipc lease`, `cipc guard check` and the Claude Code hooks.

use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// Why a repo or a path could not be derived. Each sentence says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepoError {
    /// The `git` program could not be run.
    #[error("cannot run git ({0}); install git, or name the repository with --repo and give repo-relative paths")]
    GitMissing(String),
    /// The directory is not inside a git checkout.
    #[error("{dir} is not inside a git checkout ({detail}); run this in one, or pass --repo NAME with repo-relative paths")]
    NotACheckout {
        /// The directory that was asked about.
        dir: String,
        /// What git said.
        detail: String,
    },
    /// git answered something this code cannot use.
    #[error("git {what} failed: {detail}")]
    Git {
        /// Which question was asked (`rev-parse --show-toplevel`).
        what: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// A path outside the checkout's top level.
    #[error("{path} is outside the checkout at {top}; name a path inside it")]
    Outside {
        /// The path as given.
        path: String,
        /// The checkout's top level.
        top: String,
    },
    /// A path that names the whole checkout (`.` at the top level).
    #[error("{0} is the whole checkout; to hold all of it, name the pattern '**' (quoted, so the shell leaves it alone)")]
    WholeCheckout(String),
    /// A repo-relative pattern that starts at the root (`/src`).
    #[error(
        "{0:?} is absolute; give a path relative to the repository's top level, e.g. src/main.rs"
    )]
    Absolute(String),
    /// A repo-relative pattern that climbs out of the repository.
    #[error("{0:?} climbs out of the repository with '..'; give a path inside it, relative to its top level")]
    Escapes(String),
    /// An empty path.
    #[error("an empty path; give a file (src/main.rs), a directory ending in / (src/api/) or a glob (src/**/*.sql)")]
    Empty,
    /// A path that is not UTF-8 (the API's paths are strings).
    #[error("{0} is not valid UTF-8; the broker only takes UTF-8 paths")]
    NotUtf8(String),
}

/// One git checkout as cipc names it: the repo it belongs to and its top
/// level, from which paths are made relative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    /// The repo name every lease and check in this checkout carries: the
    /// normalised `origin` URL, else the top-level directory's name.
    pub repo: String,
    /// The checkout's top level, as git reports it (symlinks resolved).
    pub top: PathBuf,
    /// The directory relative paths are taken from (the one discovered from).
    pub base: PathBuf,
}

impl Checkout {
    /// The checkout `dir` is in: its top level (`git rev-parse
    /// --show-toplevel`) and its repo name (the normalised `origin` URL,
    /// else the top level's directory name). Relative paths given to
    /// [`Checkout::relative`] are taken from `dir`.
    pub fn discover(dir: &Path) -> Result<Checkout, RepoError> {
        let base = std::fs::canonicalize(dir).map_err(|e| RepoError::NotACheckout {
            dir: dir.display().to_string(),
            detail: e.to_string(),
        })?;
        let top = git(&base, &["rev-parse", "--show-toplevel"])
            .map_err(|e| match e {
                GitFailure::Missing(m) => RepoError::GitMissing(m),
                GitFailure::Said(detail) => RepoError::NotACheckout {
                    dir: dir.display().to_string(),
                    detail,
                },
            })?
            .ok_or_else(|| RepoError::NotACheckout {
                dir: dir.display().to_string(),
                detail: "git names no top level (a bare repository?)".into(),
            })?;
        let top = PathBuf::from(top);
        let remote =
            git(&base, &["config", "--get", "remote.origin.url"]).map_err(|e| RepoError::Git {
                what: "config --get remote.origin.url",
                detail: e.to_string(),
            })?;
        let repo = remote
            .as_deref()
            .and_then(normalize_remote)
            .or_else(|| top.file_name().map(|n| n.to_string_lossy().into_owned()))
            .ok_or_else(|| RepoError::Git {
                what: "rev-parse --show-toplevel",
                detail: format!("the top level {} has no name", top.display()),
            })?;
        Ok(Checkout { repo, top, base })
    }

    /// `path` (relative to the directory this checkout was discovered
    /// from, or absolute) as the repo-relative, `/`-separated name every
    /// session uses: `./` and `..` resolved lexically, a trailing `/` kept
    /// (a directory pattern) and added when `path` is an existing
    /// directory. Glob characters pass through untouched. A path outside
    /// the top level, or the top level itself, is refused.
    pub fn relative(&self, path: &str) -> Result<String, RepoError> {
        if path.trim().is_empty() {
            return Err(RepoError::Empty);
        }
        let given = Path::new(path);
        let joined = if given.is_absolute() {
            given.to_path_buf()
        } else {
            self.base.join(given)
        };
        let lexical = lexically_normal(&joined);
        // Lexically first: a glob or a file not yet written has no real
        // path. Then through symlinks (/tmp -> /private/tmp), when the
        // path or one of its ancestors exists.
        let inside = match lexical.strip_prefix(&self.top) {
            Ok(rest) => rest.to_path_buf(),
            Err(_) => real_path(&lexical)
                .and_then(|real| real.strip_prefix(&self.top).ok().map(Path::to_path_buf))
                .ok_or_else(|| RepoError::Outside {
                    path: path.to_string(),
                    top: self.top.display().to_string(),
                })?,
        };
        let mut parts = Vec::new();
        for c in inside.components() {
            let part = c
                .as_os_str()
                .to_str()
                .ok_or_else(|| RepoError::NotUtf8(path.to_string()))?;
            parts.push(part);
        }
        if parts.is_empty() {
            return Err(RepoError::WholeCheckout(path.to_string()));
        }
        let mut name = parts.join("/");
        let dir_given = path.ends_with('/') || path.ends_with("/.") || path == ".";
        if dir_given || (lexical.is_dir() && !has_glob(&name)) {
            name.push('/');
        }
        Ok(name)
    }
}

/// Whether a pattern holds glob characters (then it is not a plain path).
fn has_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '{'])
}

/// `path` with `.` dropped and each `..` taking out the component before it,
/// without touching the file system (as `a/../b` reads, not as symlinks
/// would resolve it). `..` at the root stays at the root.
fn lexically_normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// `path` through the file system: its longest existing ancestor
/// canonicalised (symlinks resolved), and the rest appended as it was.
fn real_path(path: &Path) -> Option<PathBuf> {
    let mut existing = path;
    let mut rest: Vec<&OsStr> = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(existing) {
            let mut out = real;
            out.extend(rest.iter().rev());
            return Some(out);
        }
        rest.push(existing.file_name()?);
        existing = existing.parent()?;
    }
}

/// A path pattern given as repo-relative (with `--repo`, or from git
/// itself), checked and tidied the same way: `\` is not a separator, `./`
/// and empty components are dropped, `a/../b` becomes `b`, a trailing `/`
/// is kept. Absolute patterns and ones that climb out with `..` are refused.
pub fn normalize_pattern(pattern: &str) -> Result<String, RepoError> {
    let trimmed = pattern.trim();
    if trimmed.is_empty() {
        return Err(RepoError::Empty);
    }
    if trimmed.starts_with('/') {
        return Err(RepoError::Absolute(pattern.to_string()));
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in trimmed.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(RepoError::Escapes(pattern.to_string()));
                }
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(RepoError::WholeCheckout(pattern.to_string()));
    }
    let mut name = parts.join("/");
    if trimmed.ends_with('/') || trimmed.ends_with("/.") {
        name.push('/');
    }
    Ok(name)
}

/// The repo name of a remote URL: scheme, user and port dropped, the host
/// lower-cased, a trailing `/` and `.git` dropped; `None` when nothing is
/// left. All of `git@github.com:Org/App.git`, `ssh://git@github.com/Org/App`
/// and `https://user@GitHub.com/Org/App.git/` are `github.com/Org/App`.
/// A local remote (`/srv/git/app.git`, `file:///srv/git/app.git`) is its
/// path, tidied the same way.
pub fn normalize_remote(url: &str) -> Option<String> {
    let url = url.trim();
    let (host, path) = if let Some((_scheme, rest)) = url.split_once("://") {
        // scheme://[user@]host[:port]/path
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        (host_of(authority), path)
    } else if let Some((authority, path)) = scp_like(url) {
        // [user@]host:path, as git reads it: a colon before any slash.
        (host_of(authority), path)
    } else {
        // A local path.
        (String::new(), url)
    };
    let mut path = path.trim_end_matches('/');
    if let Some(stem) = path.strip_suffix(".git") {
        path = stem.trim_end_matches('/');
    }
    let path = path.trim_start_matches('/');
    let name = match (host.is_empty(), path.is_empty()) {
        (true, true) => return None,
        (true, false) => path.to_string(),
        (false, true) => host,
        (false, false) => format!("{host}/{path}"),
    };
    Some(name)
}

/// The `[user@]host` and the path of an scp-like remote (`git@host:org/app`),
/// as git tells them from a local path: a `:` before the first `/`.
fn scp_like(url: &str) -> Option<(&str, &str)> {
    let colon = url.find(':')?;
    let slash = url.find('/').unwrap_or(usize::MAX);
    // `C:\repo` or `C:/repo` (a Windows drive) is a path, not host "C".
    if colon >= slash || colon <= 1 {
        return None;
    }
    Some((&url[..colon], &url[colon + 1..]))
}

/// The host of an authority (`user:pw@Host:22`), lower-cased, with neither
/// user nor port.
fn host_of(authority: &str) -> String {
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(inner) = host.strip_prefix('[') {
        // [::1]:22: an IPv6 literal keeps its brackets.
        inner
            .split_once(']')
            .map_or_else(|| host.to_string(), |(ip, _)| format!("[{ip}]"))
    } else {
        host.split_once(':').map_or(host, |(h, _)| h).to_string()
    };
    host.to_ascii_lowercase()
}

/// Why a git subprocess gave no answer.
#[derive(Debug)]
enum GitFailure {
    /// git itself could not be run.
    Missing(String),
    /// git ran and refused (its first stderr line).
    Said(String),
}

impl std::fmt::Display for GitFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GitFailure::Missing(m) | GitFailure::Said(m) => f.write_str(m),
        }
    }
}

/// Runs `git ARGS` in `dir`: its first stdout line, `None` when git exits
/// 1 with nothing to say (a config key that is not set).
fn git(dir: &Path, args: &[&str]) -> Result<Option<String>, GitFailure> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|e| GitFailure::Missing(e.to_string()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first = stdout.lines().next().map(str::trim).unwrap_or_default();
    if out.status.success() {
        return Ok((!first.is_empty()).then(|| first.to_string()));
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let said = stderr.lines().next().map(str::trim).unwrap_or_default();
    if said.is_empty() && out.status.code() == Some(1) {
        return Ok(None);
    }
    Err(GitFailure::Said(if said.is_empty() {
        format!("git exited with {}", out.status)
    } else {
        said.to_string()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remotes_agree_across_spellings() {
        let table: &[(&str, Option<&str>)] = &[
            ("git@github.com:Org/App.git", Some("github.com/Org/App")),
            ("ssh://git@github.com/Org/App", Some("github.com/Org/App")),
            (
                "https://user@GitHub.com/Org/App.git/",
                Some("github.com/Org/App"),
            ),
            ("https://github.com/Org/App", Some("github.com/Org/App")),
            ("http://GITHUB.COM/Org/App/", Some("github.com/Org/App")),
            ("git://github.com/Org/App.git", Some("github.com/Org/App")),
            (
                "ssh://git@github.com:22/Org/App.git",
                Some("github.com/Org/App"),
            ),
            (
                "https://user:secret@gitlab.example.com:8443/group/sub/App.git",
                Some("gitlab.example.com/group/sub/App"),
            ),
            ("github.com:Org/App", Some("github.com/Org/App")),
            ("  git@github.com:Org/App.git\n", Some("github.com/Org/App")),
            ("ssh://git@[::1]:2222/org/app.git", Some("[::1]/org/app")),
            ("/srv/git/App.git", Some("srv/git/App")),
            ("file:///srv/git/App.git/", Some("srv/git/App")),
            ("../App.git", Some("../App")),
            ("C:/repos/App.git", Some("C:/repos/App")),
            ("https://host.example/", Some("host.example")),
            ("", None),
            ("/", None),
            ("file:///", None),
        ];
        for (url, want) in table {
            assert_eq!(
                normalize_remote(url).as_deref(),
                *want,
                "normalize_remote({url:?})"
            );
        }
    }

    #[test]
    fn repo_relative_patterns_are_tidied_or_refused() {
        let table: &[(&str, Result<&str, &str>)] = &[
            ("src/main.rs", Ok("src/main.rs")),
            ("./src/main.rs", Ok("src/main.rs")),
            ("src//api/./users.rs", Ok("src/api/users.rs")),
            ("src/api/", Ok("src/api/")),
            ("src/api/.", Ok("src/api/")),
            ("a/../b", Ok("b")),
            ("src/**/*.sql", Ok("src/**/*.sql")),
            ("**", Ok("**")),
            ("/etc/passwd", Err("absolute")),
            ("../other/x", Err("climbs out")),
            ("a/../../x", Err("climbs out")),
            (".", Err("whole checkout")),
            ("a/..", Err("whole checkout")),
            ("  ", Err("empty path")),
        ];
        for (given, want) in table {
            let got = normalize_pattern(given).map_err(|e| e.to_string());
            match (want, &got) {
                (Ok(w), Ok(g)) => assert_eq!(g, w, "normalize_pattern({given:?})"),
                (Err(w), Err(g)) => assert!(g.contains(w), "normalize_pattern({given:?}): {g}"),
                _ => panic!("normalize_pattern({given:?}) = {got:?}, want {want:?}"),
            }
        }
    }

    /// A checkout in a temp directory, with `sub/` in it.
    fn checkout(dir: &Path, base: &str) -> Checkout {
        Checkout {
            repo: "r".into(),
            top: dir.to_path_buf(),
            base: dir.join(base),
        }
    }

    #[test]
    fn paths_are_relative_to_the_top_level() {
        let tmp = tempfile::tempdir().unwrap();
        let top = std::fs::canonicalize(tmp.path()).unwrap();
        std::fs::create_dir_all(top.join("sub/dir")).unwrap();
        let at_top = checkout(&top, "");
        let in_sub = checkout(&top, "sub");
        let abs = |p: &str| top.join(p).to_string_lossy().into_owned();
        let table: Vec<(&Checkout, String, Result<&str, &str>)> = vec![
            (&at_top, "src/main.rs".into(), Ok("src/main.rs")),
            (&at_top, "./src/main.rs".into(), Ok("src/main.rs")),
            (&in_sub, "x.rs".into(), Ok("sub/x.rs")),
            (&in_sub, "../x.rs".into(), Ok("x.rs")),
            (&in_sub, "a/../b.rs".into(), Ok("sub/b.rs")),
            (&in_sub, ".".into(), Ok("sub/")),
            (&at_top, "sub".into(), Ok("sub/")),
            (&at_top, "sub/dir/".into(), Ok("sub/dir/")),
            (&in_sub, "**/*.sql".into(), Ok("sub/**/*.sql")),
            (&in_sub, abs("sub/x.rs"), Ok("sub/x.rs")),
            (&at_top, abs("a/../b.rs"), Ok("b.rs")),
            (&at_top, "../outside.rs".into(), Err("outside the checkout")),
            (&in_sub, "../../x".into(), Err("outside the checkout")),
            (&at_top, "/etc/passwd".into(), Err("outside the checkout")),
            (&at_top, ".".into(), Err("whole checkout")),
            (&in_sub, "..".into(), Err("whole checkout")),
            (&at_top, String::new(), Err("empty path")),
        ];
        for (c, given, want) in &table {
            let got = c.relative(given).map_err(|e| e.to_string());
            match (want, &got) {
                (Ok(w), Ok(g)) => assert_eq!(g, w, "relative({given:?}) from {:?}", c.base),
                (Err(w), Err(g)) => assert!(g.contains(w), "relative({given:?}): {g}"),
                _ => panic!("relative({given:?}) = {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn symlinked_paths_reach_the_real_top_level() {
        let tmp = tempfile::tempdir().unwrap();
        let top = std::fs::canonicalize(tmp.path()).unwrap().join("top");
        std::fs::create_dir_all(top.join("src")).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&top, &link).unwrap();
        let c = checkout(&top, "");
        let through = link.join("src/new.rs");
        assert_eq!(
            c.relative(&through.to_string_lossy()).as_deref(),
            Ok("src/new.rs")
        );
    }

    #[test]
    fn discovery_names_the_remote_or_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().join("My App");
        std::fs::create_dir_all(top.join("sub")).unwrap();
        let run = |args: &[&str]| {
            let ok = Command::new("git")
                .arg("-C")
                .arg(&top)
                .args(args)
                .output()
                .is_ok_and(|o| o.status.success());
            assert!(ok, "git {args:?}");
        };
        let e = Checkout::discover(&top.join("sub")).unwrap_err();
        assert!(
            matches!(e, RepoError::NotACheckout { .. }),
            "not yet a checkout: {e:?}"
        );
        assert!(e.to_string().contains("--repo"), "{e}");
        run(&["init", "-q"]);
        let c = Checkout::discover(&top.join("sub")).unwrap();
        assert_eq!(c.repo, "My App", "no origin: the directory's name");
        assert_eq!(c.top, std::fs::canonicalize(&top).unwrap());
        assert_eq!(c.relative("x.rs").as_deref(), Ok("sub/x.rs"));
        run(&["remote", "add", "origin", "git@GitHub.com:Org/App.git"]);
        let c = Checkout::discover(&top).unwrap();
        assert_eq!(c.repo, "github.com/Org/App");
    }
}
