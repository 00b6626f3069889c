//! What every handler shares.

use std::sync::Arc;

use ems_core::{Ems, Store};

use crate::auth::AuthService;
use crate::idempotency::IdempotencyCache;
use crate::ops::Metrics;

/// The state behind the router: the ems service, its store (for readiness and
/// the directory lookups login needs), authentication, and operations data.
#[derive(Clone)]
pub struct AppState {
    /// The core service.
    pub ems: Ems,
    /// The store the service runs on.
    pub store: Arc<dyn Store>,
    /// Authentication.
    pub auth: Arc<AuthService>,
    /// Responses kept for `Idempotency-Key` replays.
    pub idempotency: Arc<IdempotencyCache>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// The backend's name, for `/ready` and logs.
    pub backend: &'static str,
    /// The header payment gateways put their webhook signature in.
    pub webhook_signature_header: String,
    /// How often the notification stream polls the log when idle.
    pub notify_poll: std::time::Duration,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}
