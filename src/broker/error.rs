//! Why a broker operation was refused: a catalogue code and a sentence.

use crate::api::Lease;
use crate::error_code::ErrorCode;
use crate::store::StoreError;

/// A refusal: which one ([`ErrorCode`], from which the server derives the
/// status) and a sentence a human can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BrokerError {
    /// Which refusal this is.
    pub code: ErrorCode,
    /// One sentence that says what was wrong and how to fix it.
    pub message: String,
    /// For `lease_conflict`, the leases in the way (every door shows them
    /// beside the error: REST's 409 body `conflicts`, MCP's structured
    /// content); empty otherwise.
    pub conflicts: Vec<Lease>,
}

impl BrokerError {
    /// A refusal with its code and sentence.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        BrokerError {
            code,
            message: message.into(),
            conflicts: Vec::new(),
        }
    }

    /// A lease request refused because of `conflicts` (`lease_conflict`).
    pub fn lease_conflict(message: impl Into<String>, conflicts: Vec<Lease>) -> Self {
        BrokerError {
            code: ErrorCode::LeaseConflict,
            message: message.into(),
            conflicts,
        }
    }

    /// The store could not save or read.
    pub fn store(message: impl Into<String>) -> Self {
        BrokerError::new(ErrorCode::StoreFailed, message)
    }

    /// Why the store cannot take a change, as the refusal of a write that
    /// was refused before it changed anything (the sentence says so).
    pub fn store_refused_write(e: StoreError) -> Self {
        store_refusal(e, true)
    }
}

/// A name that breaks the rule ([`crate::api::validate_name`]).
impl From<crate::api::InvalidName> for BrokerError {
    fn from(e: crate::api::InvalidName) -> Self {
        BrokerError::new(ErrorCode::InvalidName, e.to_string())
    }
}

/// Each kind of store failure is its own refusal, told apart by variant: a
/// stalled write turn and an unreachable database recover by themselves
/// (retry), a file that cannot be written needs a person (check the disk).
impl From<StoreError> for BrokerError {
    fn from(e: StoreError) -> Self {
        store_refusal(e, false)
    }
}

fn store_refusal(e: StoreError, refused_write: bool) -> BrokerError {
    let unchanged = if refused_write {
        "nothing was changed, and "
    } else {
        ""
    };
    match e {
        StoreError::TurnStalled(_) => BrokerError::new(
            ErrorCode::WriteTurnStalled,
            format!("{e}; {unchanged}writes resume by themselves once PostgreSQL ends that node's turn: retry shortly"),
        ),
        StoreError::Unavailable(_) => BrokerError::new(
            ErrorCode::StoreUnreachable,
            format!("{e}; {unchanged}this node reconnects by itself once the database answers: retry shortly"),
        ),
        StoreError::Write(why) => BrokerError::store(format!(
            "the store cannot save changes ({why}); check the disk and the data directory, then restart the broker"
        )),
        StoreError::Open { .. } | StoreError::InUse { .. } | StoreError::Closed => {
            BrokerError::store(e.to_string())
        }
    }
}
