//! Why a broker operation was refused: a catalogue code and a sentence.

use crate::error_code::ErrorCode;

/// A refusal: which one ([`ErrorCode`], from which the server derives the
/// status) and a sentence a human can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BrokerError {
    /// Which refusal this is.
    pub code: ErrorCode,
    /// One sentence that says what was wrong and how to fix it.
    pub message: String,
}

impl BrokerError {
    /// A refusal with its code and sentence.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        BrokerError {
            code,
            message: message.into(),
        }
    }

    /// Wraps a name check's sentence ([`crate::api::validate_name`]).
    pub fn invalid_name(message: String) -> Self {
        BrokerError::new(ErrorCode::InvalidName, message)
    }

    /// The store could not save or read.
    pub fn store(message: impl Into<String>) -> Self {
        BrokerError::new(ErrorCode::StoreFailed, message)
    }
}
