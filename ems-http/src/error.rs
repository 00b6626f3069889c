//! The one error envelope every endpoint answers with.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable machine-readable code, e.g. `sold_out`, `invalid_input`.
    pub code: String,
    /// A human-readable sentence.
    pub message: String,
    /// Structured data about the error (the field, the available units …);
    /// an empty object when there is nothing more to say.
    #[schema(value_type = Object)]
    pub details: Value,
    /// The request id (also in the `x-request-id` response header).
    pub request_id: String,
}

/// An error an endpoint returns; rendered as [`ErrorBody`] with the request id
/// filled in by the request-id middleware.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine code.
    pub code: &'static str,
    /// Human message.
    pub message: String,
    /// Structured details (boxed: errors travel in `Result`s).
    pub details: Box<Value>,
    /// Seconds after which a retry may succeed (`Retry-After`).
    pub retry_after: Option<u64>,
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with no details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Box::new(Value::Object(serde_json::Map::new())),
            retry_after: None,
        }
    }

    /// Adds details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Box::new(details);
        self
    }

    /// 401: no or invalid credentials.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    /// 403: authenticated but not allowed.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 400: a malformed request (bad JSON, bad header, bad path).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 422 on a named field.
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            format!("invalid {field}: {reason}"),
        )
        .with_details(json!({ "field": field, "reason": reason }))
    }

    /// 404 for an entity.
    pub fn not_found(entity: &str, id: impl ToString) -> Self {
        let id = id.to_string();
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{entity} {id} not found"),
        )
        .with_details(json!({ "entity": entity, "id": id }))
    }

    /// 500 without leaking the cause (which is logged).
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the request id identifies it in the logs",
        )
    }
}

impl From<ems_core::Error> for ApiError {
    fn from(e: ems_core::Error) -> Self {
        use ems_core::Error as E;
        let message = e.to_string();
        match e {
            E::NotFound { entity, id } => ApiError::not_found(entity, id),
            E::Conflict {
                entity,
                id,
                expected,
                found,
            } => ApiError::new(StatusCode::PRECONDITION_FAILED, "conflict", message).with_details(
                json!({ "entity": entity, "id": id, "expected_version": expected, "found_version": found }),
            ),
            E::AlreadyExists {
                entity,
                field,
                value,
            } => ApiError::new(StatusCode::CONFLICT, "already_exists", message)
                .with_details(json!({ "entity": entity, "field": field, "value": value })),
            E::SoldOut {
                quota,
                requested,
                available,
            } => ApiError::new(StatusCode::CONFLICT, "sold_out", message).with_details(
                json!({ "quota": quota, "requested": requested, "available": available }),
            ),
            E::InvalidInput { field, reason } => ApiError::invalid(field, reason),
            E::InvalidState {
                entity,
                id,
                state,
                action,
            } => ApiError::new(StatusCode::CONFLICT, "invalid_state", message).with_details(
                json!({ "entity": entity, "id": id, "state": state, "action": action }),
            ),
            E::Forbidden { action, reason } => ApiError::forbidden(message)
                .with_details(json!({ "action": action, "reason": reason })),
            E::Unavailable { retry_after, .. } => {
                tracing::warn!(error = %message, "dependency unavailable");
                let secs = retry_after.map_or(1, |d| d.as_secs().max(1));
                let mut err = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "temporarily unavailable; retry later",
                );
                err.retry_after = Some(secs);
                err
            }
            E::Payment(g) => gateway_error(g),
            E::NotSupported(what) => ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                "not_supported",
                format!("not supported by this backend: {what}"),
            ),
            other => ApiError::internal(other),
        }
    }
}

fn gateway_error(g: ems_core::payment::GatewayError) -> ApiError {
    use ems_core::payment::GatewayError as G;
    let message = g.to_string();
    match g {
        G::Declined { reason } => {
            ApiError::new(StatusCode::PAYMENT_REQUIRED, "payment_declined", message)
                .with_details(json!({ "reason": reason }))
        }
        G::InvalidSignature => ApiError::new(StatusCode::BAD_REQUEST, "invalid_signature", message),
        G::InvalidWebhook { reason } => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_webhook", message)
                .with_details(json!({ "reason": reason }))
        }
        G::UnknownGateway { name } => ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
            .with_details(json!({ "entity": "gateway", "id": name })),
        G::Rejected { reason } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "payment_rejected",
            message,
        )
        .with_details(json!({ "reason": reason })),
        G::NotSupported(what) => {
            ApiError::new(StatusCode::NOT_IMPLEMENTED, "not_supported", message)
                .with_details(json!({ "capability": what }))
        }
        G::CircuitOpen { retry_after } => {
            let mut e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "gateway_unavailable",
                message,
            );
            e.retry_after = Some(retry_after.as_secs().max(1));
            e
        }
        // Timeouts, outages and unknown failures: the gateway is at fault.
        _ => {
            tracing::warn!(error = %message, "payment gateway failure");
            ApiError::new(StatusCode::BAD_GATEWAY, "gateway_error", message)
        }
    }
}

/// The request id of the request being answered, set by the middleware so that
/// error bodies carry it.
#[derive(Debug, Clone)]
pub(crate) struct RequestId(pub(crate) String);

tokio::task_local! {
    pub(crate) static REQUEST_ID: RequestId;
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = REQUEST_ID.try_with(|r| r.0.clone()).unwrap_or_default();
        let body = ErrorBody {
            code: self.code.to_owned(),
            message: self.message,
            details: *self.details,
            request_id,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}
