//! Maps driver errors to the domain's [`Error`].

use ems_core::Error;
use mongodb::error::{ErrorKind, WriteFailure};

pub(crate) const BACKEND: &str = "mongodb";

/// Server codes: duplicate key, write conflict, no such transaction, and
/// "transaction numbers are only allowed on a replica set member or mongos".
const DUPLICATE_KEY: i32 = 11000;
const WRITE_CONFLICT: i32 = 112;
const NO_SUCH_TRANSACTION: i32 = 251;
const ILLEGAL_OPERATION: i32 = 20;

fn code(e: &mongodb::error::Error) -> Option<i32> {
    match &*e.kind {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        _ => None,
    }
}

/// Whether a driver error is worth retrying the whole transaction for.
fn transient(e: &mongodb::error::Error) -> bool {
    e.contains_label("TransientTransactionError")
        || matches!(code(e), Some(WRITE_CONFLICT | NO_SUCH_TRANSACTION))
        || matches!(
            &*e.kind,
            ErrorKind::Io(_)
                | ErrorKind::ServerSelection { .. }
                | ErrorKind::ConnectionPoolCleared { .. }
        )
}

/// Whether a driver error is a unique-index violation.
pub(crate) fn is_duplicate(e: &mongodb::error::Error) -> bool {
    code(e) == Some(DUPLICATE_KEY)
        || matches!(&*e.kind, ErrorKind::InsertMany(m)
            if m.write_errors.as_ref().is_some_and(|w| w.iter().any(|w| w.code == DUPLICATE_KEY)))
}

/// Whether a mapped error came from a transient driver failure (retry the transaction).
pub(crate) fn is_transient(e: &Error) -> bool {
    match e {
        Error::Unavailable { source, .. } => {
            source.downcast_ref::<crate::tx::Conflict>().is_some()
                || source
                    .downcast_ref::<mongodb::error::Error>()
                    .is_some_and(transient)
        }
        _ => false,
    }
}

/// Maps a driver error to the domain error.
pub(crate) fn db(e: mongodb::error::Error) -> Error {
    if transient(&e) || e.contains_label("UnknownTransactionCommitResult") {
        return Error::Unavailable {
            retry_after: None,
            source: Box::new(e),
        };
    }
    if is_duplicate(&e) {
        return Error::already_exists("record", "key", "");
    }
    if code(&e) == Some(ILLEGAL_OPERATION) || matches!(&*e.kind, ErrorKind::Transaction { .. }) {
        return Error::NotSupported(
            "multi-document transactions: this MongoDB deployment is standalone; use a replica set",
        );
    }
    Error::Backend {
        backend: BACKEND,
        source: Box::new(e),
    }
}
