//! Why a broker operation was refused; the server maps each to a status code.

/// A refusal with a sentence a human can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// The request was malformed (400).
    #[error("{0}")]
    BadRequest(String),
    /// The caller may not act as the peer it names (403): a protected peer
    /// without its key, or a wrong key.
    #[error("{0}")]
    Forbidden(String),
    /// Something named does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// Too many waits or streams are open (429).
    #[error("{0}")]
    TooManyWaiters(String),
    /// The broker cannot do it now (503), e.g. the store failed.
    #[error("{0}")]
    Unavailable(String),
}
