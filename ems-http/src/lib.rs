//! # ems-http
//!
//! The HTTP API of ems over any backend, on axum: registration and login
//! (argon2id, JWT access tokens, rotating refresh tokens), every service of
//! [`ems_core`] as an endpoint whose authorization is the core's own rule for the
//! caller's [`Actor`], the payment gateways' webhooks, a Server-Sent Events stream
//! of domain events, and an OpenAPI 3.1 document generated from the handlers.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use ems_http::{AppBuilder, AuthConfig};
//!
//! let store = Arc::new(ems_storage_memory::MemoryStore::new());
//! let ems = ems_core::Ems::builder(store).build()?;
//! let app = AppBuilder::new(ems, "memory", AuthConfig::new(vec![7u8; 32])).build()?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! ems_http::serve(listener, app.router(), std::future::pending()).await?;
//! # Ok(()) }
//! ```
//!
//! ## Conventions
//!
//! - Errors: one JSON envelope `{code, message, details, request_id}`
//!   ([`error::ErrorBody`]); the request id is also the `x-request-id` header.
//! - Money: `{"amount": "12.50", "currency": "EUR"}` (decimal strings); times are
//!   RFC 3339.
//! - Unsafe POSTs accept `Idempotency-Key`: the same key and body replay the first
//!   response; the same key with another body is 422. `POST /checkout` requires it.
//! - Updates of versioned entities (events, tiers) need `If-Match` with the
//!   entity's `ETag`; a stale one is 412.

pub mod auth;
pub mod demo;
pub mod error;
pub mod idempotency;
pub mod ops;
pub mod routes;
pub mod state;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderName, Method};
use axum::Router;
use ems_core::{Actor, Ems};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::{
    AuthConfig, AuthService, CredentialStore, LogNotifier, MemoryCredentials, Notifier,
};
pub use error::{ApiError, ErrorBody};
pub use ops::RateLimit;
pub use state::AppState;

/// The actor of a request without a token: it may read what is public.
pub(crate) fn anonymous() -> Actor {
    Actor::Anonymous
}

struct BearerAuth;

/// Every operation can also answer with the error envelope: malformed requests,
/// missing or bad tokens, rate limits, oversized bodies, backend outages.
struct ErrorDefault;

impl Modify for ErrorDefault {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let response = ResponseBuilder::new()
            .description("An error, in the common envelope (see `code`)")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                op.responses
                    .responses
                    .entry("default".to_owned())
                    .or_insert_with(|| response.clone().into());
            }
        }
    }
}

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ems",
        description = "Event management and ticketing: events, inventory with holds, checkout, payments, tickets and check-in, facilities."
    ),
    modifiers(&BearerAuth),
    components(schemas(ErrorBody, routes::notifications::SseMessage)),
    tags(
        (name = "auth", description = "Accounts and tokens"),
        (name = "events", description = "Events and their lifecycle"),
        (name = "inventory", description = "Tiers, quotas, availability, prices"),
        (name = "sales", description = "Holds, checkout, payments, coupons"),
        (name = "bookings", description = "Bookings, payments and refunds"),
        (name = "tickets", description = "Tickets and check-in"),
        (name = "facilities", description = "Venues, performers, decorations, catering"),
        (name = "notifications", description = "Domain events"),
        (name = "admin", description = "Organizations and accounts"),
        (name = "operations", description = "Health, readiness, metrics"),
    )
)]
struct ApiDoc;

/// The routes and their OpenAPI document, built from the same handlers.
pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    use routes::{auth as a, bookings as b, events as e, facilities as f, notifications as n};
    use routes::{organizations as o, sales as s};
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(a::register))
        .routes(routes!(a::login))
        .routes(routes!(a::refresh))
        .routes(routes!(a::logout))
        .routes(routes!(a::request_reset))
        .routes(routes!(a::confirm_reset))
        .routes(routes!(a::me))
        .routes(routes!(e::search, e::create))
        .routes(routes!(e::get, e::update))
        .routes(routes!(e::publish))
        .routes(routes!(e::reschedule))
        .routes(routes!(e::complete))
        .routes(routes!(e::cancel))
        .routes(routes!(e::tiers, e::add_tier))
        .routes(routes!(e::update_tier))
        .routes(routes!(e::add_quota))
        .routes(routes!(e::availability))
        .routes(routes!(e::quote))
        .routes(routes!(s::place_hold))
        .routes(routes!(s::get_hold, s::release_hold))
        .routes(routes!(s::checkout))
        .routes(routes!(s::webhook))
        .routes(routes!(s::reconcile))
        .routes(routes!(s::retry_refund))
        .routes(routes!(s::create_coupon))
        .routes(routes!(s::coupon_uses))
        .routes(routes!(b::mine))
        .routes(routes!(b::of_event))
        .routes(routes!(b::get))
        .routes(routes!(b::cancel))
        .routes(routes!(b::payments))
        .routes(routes!(b::tickets))
        .routes(routes!(b::check_in))
        .routes(routes!(f::create_resource, f::by_kind))
        .routes(routes!(f::availability))
        .routes(routes!(f::alternatives))
        .routes(routes!(f::book))
        .routes(routes!(f::cancel))
        .routes(routes!(f::of_event))
        .routes(routes!(n::page))
        .routes(routes!(n::stream))
        .routes(routes!(o::create_organization))
        .routes(routes!(o::get_organization))
        .routes(routes!(o::create_user))
        .routes(routes!(o::get_user))
        .routes(routes!(ops::health))
        .routes(routes!(ops::ready))
        .routes(routes!(ops::metrics))
        .split_for_parts();
    let mut openapi = openapi;
    ErrorDefault.modify(&mut openapi);
    (router, openapi)
}

/// Builds an [`App`].
pub struct AppBuilder {
    ems: Ems,
    backend: &'static str,
    auth: AuthConfig,
    credentials: Arc<dyn CredentialStore>,
    notifier: Arc<dyn Notifier>,
    cors: Vec<String>,
    per_ip: RateLimit,
    per_user: RateLimit,
    webhook_signature_header: String,
    notify_poll: Duration,
}

impl std::fmt::Debug for AppBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppBuilder")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

fn rate(per_second: u32, burst: u32) -> RateLimit {
    RateLimit {
        per_second: NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN),
        burst: NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN),
    }
}

impl AppBuilder {
    /// An app over `ems` (whose store is named `backend` in `/ready`), with
    /// credentials in memory, reset tokens logged, no CORS origins, and rate
    /// limits of 200 requests/s per address and 50/s per user (bursts of 400/100).
    pub fn new(ems: Ems, backend: &'static str, auth: AuthConfig) -> Self {
        Self {
            ems,
            backend,
            auth,
            credentials: Arc::new(MemoryCredentials::new()),
            notifier: Arc::new(LogNotifier),
            cors: Vec::new(),
            per_ip: rate(200, 400),
            per_user: rate(50, 100),
            webhook_signature_header: "ems-signature".to_owned(),
            notify_poll: Duration::from_millis(500),
        }
    }

    /// Where credentials live.
    pub fn credentials(mut self, store: Arc<dyn CredentialStore>) -> Self {
        self.credentials = store;
        self
    }

    /// How password-reset tokens reach their users.
    pub fn notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = notifier;
        self
    }

    /// Browser origins allowed by CORS (`*` for any).
    pub fn cors_origins(mut self, origins: Vec<String>) -> Self {
        self.cors = origins;
        self
    }

    /// Rate limits per client address and per user.
    pub fn rate_limits(mut self, per_ip: RateLimit, per_user: RateLimit) -> Self {
        self.per_ip = per_ip;
        self.per_user = per_user;
        self
    }

    /// The header gateways sign webhooks in (default `ems-signature`).
    pub fn webhook_signature_header(mut self, name: impl Into<String>) -> Self {
        self.webhook_signature_header = name.into();
        self
    }

    /// How often the notification stream polls the log when it is idle.
    pub fn notify_poll(mut self, every: Duration) -> Self {
        self.notify_poll = every;
        self
    }

    /// Checks the settings and builds the app.
    pub fn build(self) -> Result<App, ApiError> {
        let auth = AuthService::new(
            self.auth,
            self.credentials,
            Arc::clone(self.ems.clock()),
            self.notifier,
        )?;
        let header = self.webhook_signature_header.to_lowercase();
        HeaderName::from_bytes(header.as_bytes())
            .map_err(|_| ApiError::invalid("webhook_signature_header", "not a header name"))?;
        let state = AppState {
            store: Arc::clone(self.ems.store()),
            ems: self.ems,
            auth: Arc::new(auth),
            idempotency: Arc::new(idempotency::IdempotencyCache::default()),
            metrics: Arc::new(ops::Metrics::new().map_err(ApiError::internal)?),
            backend: self.backend,
            webhook_signature_header: header,
            notify_poll: self.notify_poll,
        };
        let cors = cors(&self.cors)?;
        Ok(App {
            state,
            cors,
            limiters: Arc::new(ops::RateLimiters::new(self.per_ip, self.per_user)),
        })
    }
}

fn cors(origins: &[String]) -> Result<CorsLayer, ApiError> {
    let base = CorsLayer::new()
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            axum::http::header::AUTHORIZATION,
            axum::http::header::CONTENT_TYPE,
            axum::http::header::IF_MATCH,
            HeaderName::from_static(idempotency::HEADER),
            HeaderName::from_static(ops::REQUEST_ID_HEADER),
        ])
        .expose_headers([
            axum::http::header::ETAG,
            axum::http::header::LOCATION,
            axum::http::header::RETRY_AFTER,
            HeaderName::from_static(ops::REQUEST_ID_HEADER),
        ]);
    if origins.iter().any(|o| o == "*") {
        return Ok(base.allow_origin(AllowOrigin::any()));
    }
    let list = origins
        .iter()
        .map(|o| {
            o.parse()
                .map_err(|_| ApiError::invalid("cors_origins", format!("{o:?} is not an origin")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(base.allow_origin(AllowOrigin::list(list)))
}

/// A configured server: its state and middleware.
#[derive(Debug)]
pub struct App {
    state: AppState,
    cors: CorsLayer,
    limiters: Arc<ops::RateLimiters>,
}

impl App {
    /// The shared state (the core service, auth, metrics).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The router with every endpoint, `/openapi.json`, and the middleware:
    /// request ids and logs, metrics, CORS, body limit, rate limits,
    /// idempotency keys.
    pub fn router(&self) -> Router {
        let (routes, openapi) = api();
        let doc = Arc::new(openapi);
        let routes = routes.route(
            "/openapi.json",
            axum::routing::get(move || {
                let doc = Arc::clone(&doc);
                async move { axum::Json((*doc).clone()) }
            }),
        );
        routes
            .fallback(|| async {
                ApiError::new(
                    axum::http::StatusCode::NOT_FOUND,
                    "not_found",
                    "no such route",
                )
            })
            .layer(axum::middleware::from_fn_with_state(
                self.state.clone(),
                idempotency::layer,
            ))
            .layer(axum::middleware::from_fn_with_state(
                Arc::clone(&self.limiters),
                ops::rate_limit,
            ))
            .layer(axum::middleware::from_fn(ops::read_body))
            .layer(self.cors.clone())
            .layer(CatchPanicLayer::custom(ops::panic_response))
            .layer(axum::middleware::from_fn_with_state(
                self.state.clone(),
                ops::request_context,
            ))
            .with_state(self.state.clone())
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops
/// accepting and finishes the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
