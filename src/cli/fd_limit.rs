//! The open-file limit: every connection is a file descriptor, and many
//! systems start a process with a soft limit of 1,024 while the hard limit
//! allows far more. Both `cipc serve` (thousands of parked long-polls) and
//! `cipc bench` (thousands of client connections) raise the soft limit to
//! the hard one at start.

/// Raises the soft open-file limit as far as the hard limit allows; the
/// limit in force afterwards, when the OS tells it.
pub fn raise_open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(limit) => Some(limit),
            Err(e) => {
                tracing::debug!(error = %e, "cannot raise the open-file limit");
                rlimit::getrlimit(rlimit::Resource::NOFILE)
                    .ok()
                    .map(|(soft, _)| soft)
            }
        }
    }
    #[cfg(not(unix))]
    None
}

/// Files `cipc serve` keeps for itself beside its connections (the store,
/// the listener, logs, PostgreSQL's pool).
pub const RESERVED_FILES: u64 = 128;

/// How many connections fit under an open-file `limit`: `wanted`, or fewer
/// (with the warning to show) when the limit leaves no room for them, so
/// the broker refuses a connection with a clear 503 rather than failing to
/// accept it (or to open its own files) for want of descriptors.
pub fn connections_that_fit(wanted: usize, limit: Option<u64>) -> (usize, Option<String>) {
    let Some(limit) = limit else {
        return (wanted, None);
    };
    let room = usize::try_from(limit.saturating_sub(RESERVED_FILES))
        .unwrap_or(usize::MAX)
        .max(16);
    if wanted <= room {
        return (wanted, None);
    }
    (
        room,
        Some(format!(
            "the open-file limit is {limit} (ulimit -n), so at most {room} connections are served \
             instead of --max-connections {wanted}; raise the hard limit (ulimit -Hn, or LimitNOFILE= in a systemd unit) to serve more"
        )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_fit_under_the_file_limit_with_room_for_the_broker() {
        assert_eq!(connections_that_fit(10_000, None), (10_000, None));
        assert_eq!(
            connections_that_fit(10_000, Some(1_048_576)),
            (10_000, None)
        );
        let (n, warning) = connections_that_fit(10_000, Some(1024));
        assert_eq!(n, 1024 - 128);
        assert!(warning.is_some_and(|w| w.contains("ulimit")));
        assert_eq!(connections_that_fit(10_000, Some(10)).0, 16);
    }
}
