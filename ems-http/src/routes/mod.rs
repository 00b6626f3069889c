//! The endpoints, grouped by what they manage, and the extractors they share.

pub mod auth;
pub mod bookings;
pub mod events;
pub mod facilities;
pub mod notifications;
pub mod organizations;
pub mod sales;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::header::{ETAG, IF_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, IntoResponseParts, Response, ResponseParts};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;

/// JSON body whose rejections are [`ApiError`]s in the common envelope.
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Path parameters whose rejections are [`ApiError`]s.
#[derive(Debug, Clone, Copy, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// Query parameters whose rejections are [`ApiError`]s.
#[derive(Debug, Clone, Copy, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::JsonDataError(e) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
                e.body_text(),
            ),
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected `Content-Type: application/json`",
            ),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                crate::ops::too_large()
            }
            other => ApiError::bad_request(other.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::bad_request(r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            r.body_text(),
        )
    }
}

/// The `ETag` of a versioned entity: its core `version`, quoted.
#[derive(Debug, Clone, Copy)]
pub struct ETag(pub u64);

impl IntoResponseParts for ETag {
    type Error = std::convert::Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", self.0)) {
            res.headers_mut().insert(ETAG, v);
        }
        Ok(res)
    }
}

/// The version an `If-Match` header names (required on updates).
pub fn if_match(headers: &HeaderMap) -> Result<u64, ApiError> {
    let value = headers.get(IF_MATCH).ok_or_else(|| {
        ApiError::new(
            StatusCode::PRECONDITION_REQUIRED,
            "precondition_required",
            "updates need `If-Match` with the entity's ETag",
        )
    })?;
    value
        .to_str()
        .ok()
        .map(|v| v.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| ApiError::bad_request("If-Match must be an ETag such as \"3\""))
}

/// Cursor pagination parameters.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Continue after this cursor (from the previous page's `next`).
    pub after: Option<String>,
    /// Page size, 1..=500 (default 50).
    pub limit: Option<u32>,
}

impl PageParams {
    /// The core page request.
    pub fn request(&self) -> ems_core::page::PageRequest {
        ems_core::page::PageRequest {
            after: self.after.clone().map(ems_core::page::Cursor::from),
            limit: self.limit,
        }
    }
}

/// A page of items and the cursor of the next one.
#[derive(Debug, Serialize, ToSchema)]
pub struct PageOf<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass as `after` to read the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

impl<T> From<ems_core::page::Page<T>> for PageOf<T> {
    fn from(p: ems_core::page::Page<T>) -> Self {
        Self {
            items: p.items,
            next: p.next.map(|c| c.as_str().to_owned()),
        }
    }
}

/// 201 Created with a body.
pub fn created<T: Serialize>(body: T) -> Response {
    (StatusCode::CREATED, axum::Json(body)).into_response()
}

/// The wire name of a unit enum variant (`confirmed`, `sold_out` …).
pub(crate) fn tag<T: Serialize + std::fmt::Debug>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{value:?}").to_lowercase(),
    }
}
