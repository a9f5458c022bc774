//! The broker's token on the command line: `cipc serve --generate-token`
//! makes one (to stdout, or a private file), `--token-file` reads one (only
//! a private file), and every token's length is judged before the broker
//! serves with it.

use super::exit::CliError;
use std::path::{Path, PathBuf};

/// A new random token: 32 random bytes, URL-safe base64.
pub fn generate_token() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Tokens shorter than this are refused: they can be guessed.
pub const MIN_TOKEN_CHARS: usize = 8;
/// Tokens shorter than this draw a warning.
pub const GOOD_TOKEN_CHARS: usize = 16;

/// How to get a good token, said with every token-length complaint.
const TOKEN_ADVICE: &str = "use a random one: export CIPC_TOKEN=$(cipc serve --generate-token), \
                            or cipc serve --generate-token --out FILE and --token-file FILE";

/// A token too short to keep anyone out (its length in characters).
#[derive(Debug, thiserror::Error)]
#[error(
    "the token is {0} characters long, too short to keep anyone out (at least {MIN_TOKEN_CHARS}, better {GOOD_TOKEN_CHARS} or more); {TOKEN_ADVICE}"
)]
pub struct TokenTooShort(pub usize);

/// Judges a token's length: `Err` (refuse) under [`MIN_TOKEN_CHARS`],
/// `Ok(Some(warning))` under [`GOOD_TOKEN_CHARS`], else `Ok(None)`.
pub fn check_token_length(token: &str) -> Result<Option<String>, TokenTooShort> {
    let n = token.chars().count();
    let advice = TOKEN_ADVICE;
    if n < MIN_TOKEN_CHARS {
        return Err(TokenTooShort(n));
    }
    if n < GOOD_TOKEN_CHARS {
        return Ok(Some(format!(
            "warning: the token is only {n} characters long and could be guessed; {GOOD_TOKEN_CHARS} or more is safer ({advice})"
        )));
    }
    Ok(None)
}

/// Why a token file cannot be written (`--generate-token --out`) or read
/// (`--token-file`): each says what to do, and `cipc` exits 2.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// The folder for a new token file cannot be made.
    #[error("cannot create the folder {} for the token: {source}; create it yourself (mkdir -p -m 700 {0}) or choose another --out", dir.display())]
    CreateDir {
        /// The folder.
        dir: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file is there and `--force` was not given.
    #[error("{} already exists; pass --force to replace it, or choose another --out", .0.display())]
    Exists(PathBuf),
    /// Writing the token failed.
    #[error("cannot write the token to {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A replaced file cannot be made private.
    #[error("cannot make {} private (chmod 600): {source}", path.display())]
    Chmod {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// Reading the token failed.
    #[error("cannot read token file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// Others on this machine can read the file, so the token is refused.
    #[error(
        "token file {p} is world-readable (mode {mode:o}): anyone on this machine could read the token; \
         make it yours alone with `chmod 600 {p}` and try again \
         (`cipc serve --generate-token --out PATH` writes token files that way)",
        p = path.display()
    )]
    WorldReadable {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file holds no token.
    #[error("token file {} is empty", .0.display())]
    Empty(PathBuf),
}

/// A token file that cannot be used is bad usage (exit 2), its reason the line.
impl From<TokenFileError> for CliError {
    fn from(e: TokenFileError) -> CliError {
        CliError::usage(e.to_string())
    }
}

/// Writes a new token to `path`, readable by its owner only (mode 600),
/// never replacing an existing file unless `force`. Missing folders on the
/// way are created, private (mode 700): `--out ~/.config/cipc/token` on a
/// new machine just works.
pub(super) fn write_token_file(
    path: &Path,
    token: &str,
    force: bool,
) -> Result<(), TokenFileError> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(dir)
            .map_err(|source| TokenFileError::CreateDir {
                dir: dir.to_path_buf(),
                source,
            })?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let write_failed = |source| TokenFileError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            TokenFileError::Exists(path.to_path_buf())
        } else {
            write_failed(e)
        }
    })?;
    // A replaced file keeps its old mode unless told: make it private first.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|source| TokenFileError::Chmod {
                path: path.to_path_buf(),
                source,
            })?;
    }
    writeln!(file, "{token}")
        .and_then(|()| file.sync_all())
        .map_err(write_failed)
}

/// When stdout is a file others may read (`--generate-token > token`),
/// the advice to make it private; `None` for a pipe, a terminal, or a
/// private file.
pub(super) fn stdout_file_exposed() -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        use std::os::unix::fs::PermissionsExt;
        let fd = std::io::stdout().as_fd().try_clone_to_owned().ok()?;
        let meta = std::fs::File::from(fd).metadata().ok()?;
        let mode = meta.permissions().mode() & 0o777;
        if !meta.is_file() || mode & 0o077 == 0 {
            return None;
        }
        let name = std::fs::read_link("/proc/self/fd/1")
            .map_or_else(|_| "FILE".to_string(), |p| p.display().to_string());
        Some(format!(
            "cipc serve: the token went into {name}, which others can read (mode {mode:o}), so --token-file will refuse it; \
             run `chmod 600 {name}`, or next time write it with `cipc serve --generate-token --out {name}`"
        ))
    }
    #[cfg(not(unix))]
    None
}

/// Reads a token file, refusing one that others can read.
pub fn read_token_file(path: &Path) -> Result<String, TokenFileError> {
    let read_failed = |source| TokenFileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_failed)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o004 != 0 {
            return Err(TokenFileError::WorldReadable {
                path: path.to_path_buf(),
                mode: mode & 0o777,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let token = std::fs::read_to_string(path)
        .map_err(read_failed)?
        .trim()
        .to_string();
    if token.is_empty() {
        return Err(TokenFileError::Empty(path.to_path_buf()));
    }
    Ok(token)
}
