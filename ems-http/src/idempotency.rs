//! `Idempotency-Key` on unsafe POSTs: the same key with the same body gets the
//! first response again; the same key with another body is refused (422); a
//! retry while the first is still running gets 409.
//!
//! Responses are kept in process memory for [`IdempotencyCache::TTL`]. A
//! checkout's key also goes to the core saga, whose idempotency lives in the
//! database, so a retry that reaches another process still never charges twice.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// The response header set on a replayed response.
pub const REPLAYED: &str = "idempotent-replayed";

#[derive(Clone)]
enum Entry {
    InFlight {
        body: [u8; 32],
    },
    Done {
        body: [u8; 32],
        status: StatusCode,
        headers: Vec<(HeaderName, HeaderValue)>,
        response: Bytes,
        at: Instant,
    },
}

#[derive(Default)]
struct Entries {
    map: HashMap<String, Entry>,
    /// Finished entries in the order they finished: eviction takes from the
    /// front, so it costs O(1) per request, never a scan.
    order: VecDeque<(Instant, String)>,
}

/// Responses by (caller, method, path, key).
#[derive(Default)]
pub struct IdempotencyCache {
    entries: Mutex<Entries>,
}

impl std::fmt::Debug for IdempotencyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdempotencyCache").finish_non_exhaustive()
    }
}

impl IdempotencyCache {
    /// How long a response is kept.
    pub const TTL: Duration = Duration::from_secs(24 * 3600);
    /// At most this many responses are kept; the oldest go first.
    pub const CAPACITY: usize = 100_000;
    /// The longest key accepted.
    pub const MAX_KEY: usize = 200;

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Entries {
    /// Drops finished entries past their TTL, and the oldest beyond capacity.
    fn evict(&mut self, now: Instant) {
        while let Some((at, key)) = self.order.front() {
            let expired = now.duration_since(*at) >= IdempotencyCache::TTL;
            if !expired && self.map.len() < IdempotencyCache::CAPACITY {
                break;
            }
            // The entry may have been replaced since; only drop what finished then.
            if matches!(self.map.get(key), Some(Entry::Done { at: done, .. }) if done == at) {
                self.map.remove(key);
            }
            self.order.pop_front();
        }
    }

    fn finish(&mut self, slot: String, entry: Entry, at: Instant) {
        self.map.insert(slot.clone(), entry);
        self.order.push_back((at, slot));
        self.evict(at);
    }
}

/// The caller part of the cache key: the bearer token's subject, else the
/// client address, so two callers never share keys.
fn caller(headers: &HeaderMap, req: &Request) -> String {
    if let Some(auth) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        // The digest of the credential; the token is verified by the handler.
        return format!("{:x}", Sha256::digest(auth.as_bytes()));
    }
    crate::ops::client_ip(req).map_or_else(|| "anonymous".to_owned(), |ip| ip.to_string())
}

/// Middleware applying the cache to POSTs that carry the header.
pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let Some(key) = req.headers().get(HEADER) else {
        return next.run(req).await;
    };
    let key = match key.to_str() {
        Ok(k) if !k.trim().is_empty() && k.len() <= IdempotencyCache::MAX_KEY => k.to_owned(),
        _ => {
            return ApiError::bad_request(format!(
                "Idempotency-Key must be 1..={} visible ASCII characters",
                IdempotencyCache::MAX_KEY
            ))
            .into_response()
        }
    };
    let slot = format!(
        "{}|{}|{}",
        caller(req.headers(), &req),
        req.uri().path(),
        key
    );
    let (parts, body) = req.into_parts();
    let bytes = match to_bytes(body, crate::ops::BODY_LIMIT).await {
        Ok(b) => b,
        Err(_) => return crate::ops::too_large().into_response(),
    };
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    {
        let mut entries = state.idempotency.lock();
        entries.evict(Instant::now());
        match entries.map.get(&slot) {
            Some(Entry::InFlight { body }) => {
                let err = if *body == digest {
                    ApiError::new(
                        StatusCode::CONFLICT,
                        "request_in_progress",
                        "a request with this Idempotency-Key is still running; retry later",
                    )
                } else {
                    key_reused()
                };
                return err.into_response();
            }
            Some(Entry::Done {
                body,
                status,
                headers,
                response,
                ..
            }) => {
                if *body != digest {
                    return key_reused().into_response();
                }
                let mut r = Response::new(Body::from(response.clone()));
                *r.status_mut() = *status;
                for (k, v) in headers {
                    r.headers_mut().insert(k.clone(), v.clone());
                }
                r.headers_mut()
                    .insert(REPLAYED, HeaderValue::from_static("true"));
                return r;
            }
            None => {
                entries
                    .map
                    .insert(slot.clone(), Entry::InFlight { body: digest });
            }
        }
    }
    // If the client goes away, the in-flight mark must not stay behind.
    let guard = InFlightGuard {
        cache: &state.idempotency,
        slot: Some(slot.clone()),
    };
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let (rparts, rbody) = response.into_parts();
    let rbytes = match to_bytes(rbody, usize::MAX).await {
        Ok(b) => b,
        Err(e) => return ApiError::internal(e).into_response(),
    };
    let mut guard = guard;
    if rparts.status.is_server_error() {
        // A failure is not an answer worth replaying: the retry runs again.
        drop(guard);
    } else {
        guard.slot = None;
        let headers = rparts
            .headers
            .iter()
            .filter(|(k, _)| {
                *k == axum::http::header::CONTENT_TYPE
                    || *k == axum::http::header::ETAG
                    || *k == axum::http::header::LOCATION
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let at = Instant::now();
        state.idempotency.lock().finish(
            slot,
            Entry::Done {
                body: digest,
                status: rparts.status,
                headers,
                response: rbytes.clone(),
                at,
            },
            at,
        );
    }
    Response::from_parts(rparts, Body::from(rbytes))
}

fn key_reused() -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
        "this Idempotency-Key was used with a different request body",
    )
}

struct InFlightGuard<'a> {
    cache: &'a IdempotencyCache,
    slot: Option<String>,
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.cache.lock().map.remove(&slot);
        }
    }
}
