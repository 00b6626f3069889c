//! Operations: request ids, metrics, rate limits, body limits, health.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::header::{CONNECTION, CONTENT_LENGTH};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, RequestId, REQUEST_ID};
use crate::state::AppState;

/// The largest request body accepted (bytes).
pub const BODY_LIMIT: usize = 64 * 1024;

/// The response to a body over [`BODY_LIMIT`].
pub fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("request body over {BODY_LIMIT} bytes"),
    )
}

/// Reads the whole request body (at most [`BODY_LIMIT`] bytes) before any
/// other layer or handler runs.
///
/// A response sent while part of the body is still unread leaves the HTTP/1
/// connection unusable: the server has to close it, and a client that reuses
/// it for its next request sees the connection drop without a response. With
/// the body read first, every rejection (authentication, path, precondition,
/// idempotency) leaves the connection clean for the next request. A body over
/// the limit gets `413` with `Connection: close`, so clients know not to reuse
/// the connection.
pub async fn read_body(req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        return closing(too_large().into_response());
    }
    let (parts, body) = req.into_parts();
    match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(e) => {
            let over_limit = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            let err = if over_limit {
                too_large()
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "the request body could not be read",
                )
            };
            closing(err.into_response())
        }
    }
}

/// Marks a response as the last on its connection.
fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Turns a panic in a handler into a `500` error envelope instead of a
/// dropped connection, and logs it.
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    tracing::error!(panic = %detail, "handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error",
    )
    .into_response()
}

/// The header carrying the request id, in and out.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The client's address: the socket peer (proxies' forwarding headers are not
/// trusted unless a deployment puts its own layer in front).
pub fn client_ip(req: &Request) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// Gives every request an id (the caller's `x-request-id` if it is sane, else a
/// new UUID), makes it available to error bodies and logs, echoes it back, and
/// records the request's latency.
pub async fn request_context(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().clone();
    let span = tracing::info_span!("request", request_id = %id, %method, route = %route);
    let started = Instant::now();
    let mut response = REQUEST_ID
        .scope(RequestId(id.clone()), async move {
            let _entered = span.enter();
            next.run(req).await
        })
        .await;
    let elapsed = started.elapsed();
    let status = response.status();
    state
        .metrics
        .requests
        .with_label_values(&[method.as_str(), &route, status.as_str()])
        .observe(elapsed.as_secs_f64());
    tracing::info!(
        request_id = %id,
        %method,
        route = %route,
        status = status.as_u16(),
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    response
}

/// Prometheus metrics of one server.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Request latency by method, route and status.
    pub requests: HistogramVec,
    /// Checkouts by outcome (`confirmed`, `pending`, `failed` …).
    pub checkouts: IntCounterVec,
    /// Checkouts refused because a quota ran out.
    pub sold_outs: IntCounter,
}

impl Metrics {
    /// Registers the metrics in a registry of their own.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = HistogramVec::new(
            HistogramOpts::new(
                "ems_http_request_duration_seconds",
                "HTTP request latency by method, route and status",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["method", "route", "status"],
        )?;
        let checkouts = IntCounterVec::new(
            Opts::new("ems_checkouts_total", "Checkouts by booking outcome"),
            &["outcome"],
        )?;
        let sold_outs = IntCounter::new(
            "ems_sold_outs_total",
            "Checkouts and holds refused because a quota ran out",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(checkouts.clone()))?;
        registry.register(Box::new(sold_outs.clone()))?;
        Ok(Self {
            registry,
            requests,
            checkouts,
            sold_outs,
        })
    }

    /// The text exposition format.
    pub fn render(&self) -> Result<String, ApiError> {
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .map_err(ApiError::internal)?;
        String::from_utf8(out).map_err(ApiError::internal)
    }
}

/// Requests allowed per key and second, with a burst.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: NonZeroU32,
    /// Burst size.
    pub burst: NonZeroU32,
}

impl RateLimit {
    /// `n` requests per second with bursts of `2n` (at least 1).
    pub fn per_second(n: u32) -> Self {
        let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        Self {
            per_second: n,
            burst: n.saturating_mul(NonZeroU32::new(2).unwrap_or(NonZeroU32::MIN)),
        }
    }
}

/// Per-IP and per-user rate limiters.
pub struct RateLimiters {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    per_user: DefaultKeyedRateLimiter<String>,
}

impl std::fmt::Debug for RateLimiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiters").finish_non_exhaustive()
    }
}

impl RateLimiters {
    /// Limiters with the given quotas.
    pub fn new(per_ip: RateLimit, per_user: RateLimit) -> Self {
        let quota = |r: RateLimit| Quota::per_second(r.per_second).allow_burst(r.burst);
        Self {
            per_ip: RateLimiter::keyed(quota(per_ip)),
            per_user: RateLimiter::keyed(quota(per_user)),
        }
    }
}

fn limited(wait: std::time::Duration, scope: &str) -> Response {
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many requests from this {scope}; retry later"),
    );
    e.retry_after = Some(wait.as_secs().max(1));
    e.into_response()
}

/// Refuses requests over the per-IP or per-user rate with 429 and `Retry-After`.
pub async fn rate_limit(
    State(limiters): State<Arc<RateLimiters>>,
    req: Request,
    next: Next,
) -> Response {
    let now = DefaultClock::default().now();
    if let Some(ip) = client_ip(&req) {
        if let Err(not_until) = limiters.per_ip.check_key(&ip) {
            return limited(not_until.wait_time_from(now), "address");
        }
    }
    if let Some(auth) = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        // Keyed by the token's subject when it parses; verification happens in
        // the handler, so a forged token only spends its own bucket.
        let key = subject_of(auth).unwrap_or_else(|| auth.to_owned());
        if let Err(not_until) = limiters.per_user.check_key(&key) {
            return limited(not_until.wait_time_from(now), "user");
        }
    }
    next.run(req).await
}

/// The unverified `sub` of a bearer JWT (for rate-limit keys only).
fn subject_of(authorization: &str) -> Option<String> {
    use base64::Engine as _;
    let token = authorization.split_once(' ')?.1;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("sub")?.as_str().map(str::to_owned)
}

/// Liveness and readiness answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `unavailable` with a reason.
    pub status: String,
    /// The backend in use.
    pub backend: String,
    /// Why the server is not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "The process is up", body = Health)))]
pub async fn health(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
        backend: state.backend.to_owned(),
        reason: None,
    })
}

/// Readiness: the backend answers a read.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "The backend answers", body = Health),
        (status = 503, description = "The backend does not answer", body = Health),
    ))]
pub async fn ready(State(state): State<AppState>) -> Response {
    use ems_core::directory::DirectoryStore;
    let probe = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        state
            .store
            .organization(ems_core::id::OrganizationId(uuid::Uuid::nil())),
    )
    .await;
    let reason = match probe {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("backend did not answer within 2 s".to_owned()),
    };
    let status = if reason.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Health {
            status: if reason.is_none() {
                "ok"
            } else {
                "unavailable"
            }
            .to_owned(),
            backend: state.backend.to_owned(),
            reason,
        }),
    )
        .into_response()
}

/// Prometheus metrics in the text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = state.metrics.render()?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        text,
    )
        .into_response())
}
