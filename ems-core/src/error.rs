//! The error every service call and every storage port returns.

use std::error::Error as StdError;
use std::time::Duration;

/// Boxed source error of a backend or gateway, kept for logs.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Result alias used across `ems-core`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, phrased as what the caller can do about it.
///
/// Every variant names the entity, field or rule involved. Backends map their
/// driver errors into these at the edge and keep the cause in `source`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The entity does not exist (or is not visible to the actor).
    #[error("{entity} {id} not found")]
    NotFound {
        /// Kind of entity, e.g. `"event"`.
        entity: &'static str,
        /// Its id as text.
        id: String,
    },
    /// An optimistic-concurrency check failed: somebody else changed it first.
    #[error("{entity} {id} was modified concurrently: expected version {expected}, found {found}")]
    Conflict {
        /// Kind of entity.
        entity: &'static str,
        /// Its id as text.
        id: String,
        /// The version the caller based its change on.
        expected: u64,
        /// The version currently stored.
        found: u64,
    },
    /// A unique value is already taken (an email, an idempotency key with another body).
    #[error("{entity} with {field} {value:?} already exists")]
    AlreadyExists {
        /// Kind of entity.
        entity: &'static str,
        /// The unique field.
        field: &'static str,
        /// The value that is taken.
        value: String,
    },
    /// Not enough units left on some quota the request draws on.
    #[error("sold out: {requested} requested on {quota}, {available} available")]
    SoldOut {
        /// The quota (tier, event capacity or shared quota) that ran out.
        quota: String,
        /// Units requested from it.
        requested: u32,
        /// Units still available on it.
        available: u32,
    },
    /// The input is malformed or breaks a rule about values.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// The offending field (dotted path for nested fields).
        field: &'static str,
        /// Why it is rejected.
        reason: String,
    },
    /// The entity is in a state where this action is not allowed.
    #[error("cannot {action} {entity} {id} in state {state}")]
    InvalidState {
        /// Kind of entity.
        entity: &'static str,
        /// Its id as text.
        id: String,
        /// Its current state.
        state: String,
        /// The refused action.
        action: &'static str,
    },
    /// The actor may not do this.
    #[error("forbidden: {action} ({reason})")]
    Forbidden {
        /// The refused action.
        action: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// A dependency is temporarily unavailable; retrying later may succeed.
    #[error("temporarily unavailable{}", retry_after.map(|d| format!(", retry after {d:?}")).unwrap_or_default())]
    Unavailable {
        /// Suggested wait before retrying, if known.
        retry_after: Option<Duration>,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// The payment gateway refused or failed.
    #[error(transparent)]
    Payment(#[from] crate::payment::GatewayError),
    /// Stored data could not be decoded: a document or row is malformed.
    #[error("corrupt {entity} {id}: {reason}")]
    Corrupt {
        /// Kind of entity.
        entity: &'static str,
        /// Its id as text.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An unexpected backend failure; the source says what.
    #[error("{backend} backend error")]
    Backend {
        /// Which backend.
        backend: &'static str,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
    /// The backend does not offer this capability.
    #[error("not supported by this backend: {0}")]
    NotSupported(&'static str),
}

impl Error {
    /// The same error for another caller (errors are not `Clone`: a backend's
    /// source is kept as its message). Batched operations use it to give every
    /// request of a failed batch the error it would have got alone.
    pub fn replica(&self) -> Error {
        match self {
            Error::NotFound { entity, id } => Error::NotFound {
                entity,
                id: id.clone(),
            },
            Error::Conflict {
                entity,
                id,
                expected,
                found,
            } => Error::Conflict {
                entity,
                id: id.clone(),
                expected: *expected,
                found: *found,
            },
            Error::AlreadyExists {
                entity,
                field,
                value,
            } => Error::AlreadyExists {
                entity,
                field,
                value: value.clone(),
            },
            Error::SoldOut {
                quota,
                requested,
                available,
            } => Error::SoldOut {
                quota: quota.clone(),
                requested: *requested,
                available: *available,
            },
            Error::InvalidInput { field, reason } => Error::InvalidInput {
                field,
                reason: reason.clone(),
            },
            Error::InvalidState {
                entity,
                id,
                state,
                action,
            } => Error::InvalidState {
                entity,
                id: id.clone(),
                state: state.clone(),
                action,
            },
            Error::Forbidden { action, reason } => Error::Forbidden { action, reason },
            Error::Unavailable {
                retry_after,
                source,
            } => Error::Unavailable {
                retry_after: *retry_after,
                source: source.to_string().into(),
            },
            Error::Corrupt { entity, id, reason } => Error::Corrupt {
                entity,
                id: id.clone(),
                reason: reason.clone(),
            },
            Error::Backend { backend, source } => Error::Backend {
                backend,
                source: source.to_string().into(),
            },
            Error::NotSupported(what) => Error::NotSupported(what),
            other => Error::Backend {
                backend: "batch",
                source: other.to_string().into(),
            },
        }
    }

    /// Shorthand for [`Error::NotFound`].
    pub fn not_found(entity: &'static str, id: impl ToString) -> Self {
        Error::NotFound {
            entity,
            id: id.to_string(),
        }
    }

    /// Shorthand for [`Error::AlreadyExists`]: `entity`'s `field` is taken by `value`.
    pub fn already_exists(entity: &'static str, field: &'static str, value: impl ToString) -> Self {
        Error::AlreadyExists {
            entity,
            field,
            value: value.to_string(),
        }
    }

    /// Shorthand for [`Error::InvalidInput`].
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            field,
            reason: reason.into(),
        }
    }

    /// Shorthand for [`Error::InvalidState`].
    pub fn invalid_state(
        entity: &'static str,
        id: impl ToString,
        state: impl std::fmt::Debug,
        action: &'static str,
    ) -> Self {
        Error::InvalidState {
            entity,
            id: id.to_string(),
            state: format!("{state:?}"),
            action,
        }
    }

    /// Shorthand for [`Error::Forbidden`].
    pub fn forbidden(action: &'static str, reason: &'static str) -> Self {
        Error::Forbidden { action, reason }
    }

    /// Whether this is the request's own refusal (bad input, state, capacity,
    /// authorization…) rather than the store or a service failing: a batched
    /// store answers the first kind per request and the second for the batch.
    pub fn is_domain(&self) -> bool {
        !matches!(
            self,
            Error::Unavailable { .. } | Error::Backend { .. } | Error::Corrupt { .. }
        )
    }

    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Unavailable { .. } => true,
            Error::Payment(e) => e.is_retryable(),
            _ => false,
        }
    }
}
