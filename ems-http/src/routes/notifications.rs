//! Live notifications: the domain-event log as a page and as a Server-Sent
//! Events stream, resumable from a cursor (`after` or `Last-Event-ID`). Admins
//! see every event; an organizer sees the events of their organization's events.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use ems_core::event::EventStore;
use ems_core::id::{EventId, OrganizationId};
use ems_core::outbox::RecordedEvent;
use ems_core::Actor;
use futures::Stream;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{Json, Query};
use crate::auth::Authenticated;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;

/// One Server-Sent Event of the notification stream.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SseMessage {
    /// The event's sequence number (send it back as `Last-Event-ID`).
    pub id: String,
    /// Always `message`.
    #[serde(default)]
    pub event: Option<String>,
    /// A [`RecordedEvent`] as JSON.
    pub data: String,
}

/// Where to start reading.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogParams {
    /// Events after this sequence number (from the start when absent).
    pub after: Option<u64>,
    /// At most this many (1..=500, default 100; pages only).
    pub limit: Option<u32>,
}

/// Who may read which events.
#[derive(Debug, Clone, Copy)]
enum Audience {
    All,
    Organization(OrganizationId),
}

fn audience(actor: &Actor) -> Result<Audience, ApiError> {
    match *actor {
        Actor::Admin { .. } | Actor::System => Ok(Audience::All),
        Actor::Organizer { organization, .. } => Ok(Audience::Organization(organization)),
        _ => Err(ApiError::forbidden(
            "domain events are for admins and organizers",
        )),
    }
}

/// Filters a batch for an audience, remembering each event's organization.
struct Filter {
    audience: Audience,
    owners: HashMap<EventId, Option<OrganizationId>>,
}

impl Filter {
    fn new(audience: Audience) -> Self {
        Self {
            audience,
            owners: HashMap::new(),
        }
    }

    async fn keep(&mut self, s: &AppState, e: &RecordedEvent) -> Result<bool, ApiError> {
        let Audience::Organization(org) = self.audience else {
            return Ok(true);
        };
        let v = serde_json::to_value(&e.event).map_err(ApiError::internal)?;
        if let Some(o) = v.get("organization").and_then(|o| o.as_str()) {
            return Ok(o == org.to_string());
        }
        let Some(event_id) = v
            .get("event_id")
            .and_then(|id| id.as_str())
            .and_then(|id| id.parse::<EventId>().ok())
        else {
            // Payments, refunds and users are not scoped to an organization.
            return Ok(false);
        };
        let owner = match self.owners.get(&event_id) {
            Some(owner) => *owner,
            None => {
                let owner = s.store.event(event_id).await?.map(|e| e.organization);
                self.owners.insert(event_id, owner);
                owner
            }
        };
        Ok(owner == Some(org))
    }
}

fn start(params: &LogParams, headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    if let Some(last) = headers.get("last-event-id") {
        let last = last
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| ApiError::bad_request("Last-Event-ID must be a sequence number"))?;
        return Ok(Some(last));
    }
    Ok(params.after)
}

/// A page of the domain-event log, oldest first.
#[utoipa::path(get, path = "/domain-events", tag = "notifications", params(LogParams), security(("bearer" = [])),
    responses(
        (status = 200, description = "Events after the cursor", body = Vec<RecordedEvent>),
        (status = 403, description = "Not an admin or organizer", body = ErrorBody),
    ))]
pub async fn page(
    State(s): State<AppState>,
    auth: Authenticated,
    Query(params): Query<LogParams>,
) -> ApiResult<Json<Vec<RecordedEvent>>> {
    let mut filter = Filter::new(audience(&auth.actor)?);
    let limit = params.limit.unwrap_or(100);
    let batch = s
        .ems
        .events_after(&Actor::System, params.after, limit)
        .await?;
    let mut out = Vec::with_capacity(batch.len());
    for e in batch {
        if filter.keep(&s, &e).await? {
            out.push(e);
        }
    }
    Ok(Json(out))
}

/// The domain-event log as Server-Sent Events: each event's `id` is its
/// sequence number, so a reconnecting client resumes with `Last-Event-ID`.
#[utoipa::path(get, path = "/domain-events/stream", tag = "notifications", params(LogParams), security(("bearer" = [])),
    responses(
        (status = 200, description = "`text/event-stream`: one event per domain event", content_type = "text/event-stream", body = SseMessage),
        (status = 403, description = "Not an admin or organizer", body = ErrorBody),
    ))]
pub async fn stream(
    State(s): State<AppState>,
    auth: Authenticated,
    headers: HeaderMap,
    Query(params): Query<LogParams>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let audience = audience(&auth.actor)?;
    let after = start(&params, &headers)?;
    let poll = s.notify_poll;
    let state = (s, Filter::new(audience), after, Vec::<SseEvent>::new());
    let events = futures::stream::unfold(
        state,
        move |(s, mut filter, mut after, mut ready)| async move {
            loop {
                if let Some(next) = ready.pop() {
                    return Some((Ok(next), (s, filter, after, ready)));
                }
                match s.ems.events_after(&Actor::System, after, 100).await {
                    Ok(batch) if batch.is_empty() => tokio::time::sleep(poll).await,
                    Ok(batch) => {
                        for e in batch {
                            after = Some(e.seq);
                            match filter.keep(&s, &e).await {
                                Ok(true) => {
                                    let data = serde_json::to_string(&e).unwrap_or_default();
                                    ready
                                        .push(SseEvent::default().id(e.seq.to_string()).data(data));
                                }
                                Ok(false) => {}
                                Err(err) => {
                                    tracing::warn!(error = ?err.message, "notification filter failed")
                                }
                            }
                        }
                        ready.reverse();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "reading domain events failed; retrying");
                        tokio::time::sleep(poll.max(Duration::from_secs(1))).await;
                    }
                }
            }
        },
    );
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
