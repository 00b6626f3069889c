//! Events: create, read, search, edit, publish, reschedule, complete, cancel;
//! their tiers and shared quotas, availability and price preview.

use axum::extract::State;
use axum::http::{header::LOCATION, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use ems_core::event::{Event, EventCancellation, EventFilter, EventPatch, EventStatus, NewEvent};
use ems_core::id::{EventId, TierId};
use ems_core::inventory::{EventAvailability, HoldItem, NewTier, SharedQuota, TicketTier};
use ems_core::pricing::Quote;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{if_match, ETag, Json, PageOf, Path, Query};
use crate::auth::{Authenticated, MaybeAuthenticated};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;

fn with_etag(status: StatusCode, event: &Event) -> Response {
    (status, ETag(event.version), axum::Json(event)).into_response()
}

/// Event search parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventSearch {
    /// Only this organization's events.
    pub organization: Option<uuid::Uuid>,
    /// Only these statuses, comma-separated (`published,completed`).
    pub status: Option<String>,
    /// Category, case-insensitive.
    pub category: Option<String>,
    /// Starting at or after this instant (RFC 3339).
    pub starts_from: Option<DateTime<Utc>>,
    /// Starting before this instant (RFC 3339).
    pub starts_before: Option<DateTime<Utc>>,
    /// Words in the title or description.
    pub text: Option<String>,
    /// Venue city, case-insensitive.
    pub city: Option<String>,
    /// Venue name, case-insensitive.
    pub venue: Option<String>,
    /// Continue after this cursor.
    pub after: Option<String>,
    /// Page size, 1..=500 (default 50).
    pub limit: Option<u32>,
}

fn statuses(text: &str) -> Result<Vec<EventStatus>, ApiError> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| {
                ApiError::invalid(
                    "status",
                    format!("{s:?} is not one of draft, published, cancelled, completed"),
                )
            })
        })
        .collect()
}

/// Searches events visible to the caller (published ones for everybody; drafts
/// for their organization and admins), ordered by start time.
#[utoipa::path(get, path = "/events", tag = "events", params(EventSearch),
    responses(
        (status = 200, description = "A page of events", body = PageOf<Event>),
        (status = 422, description = "Bad filter or cursor", body = ErrorBody),
    ))]
pub async fn search(
    State(s): State<AppState>,
    auth: MaybeAuthenticated,
    Query(q): Query<EventSearch>,
) -> ApiResult<Json<PageOf<Event>>> {
    let filter = EventFilter {
        organization: q.organization.map(Into::into),
        statuses: q.status.as_deref().map(statuses).transpose()?,
        category: q.category,
        starts_from: q.starts_from,
        starts_before: q.starts_before,
        text: q.text,
        city: q.city,
        venue: q.venue,
    };
    let page = ems_core::page::PageRequest {
        after: q.after.map(Into::into),
        limit: q.limit,
    };
    let page = s.ems.list_events(&auth.actor(), filter, page).await?;
    Ok(Json(page.into()))
}

/// Creates a draft event (organizers of its organization, admins).
#[utoipa::path(post, path = "/events", tag = "events", request_body = NewEvent, security(("bearer" = [])),
    responses(
        (status = 201, description = "Created; `ETag` carries its version", body = Event),
        (status = 403, description = "Not an organizer of that organization", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
    ))]
pub async fn create(
    State(s): State<AppState>,
    auth: Authenticated,
    Json(new): Json<NewEvent>,
) -> ApiResult<Response> {
    let event = s.ems.create_event(&auth.actor, new).await?;
    let mut r = with_etag(StatusCode::CREATED, &event);
    if let Ok(v) = format!("/events/{}", event.id).parse() {
        r.headers_mut().insert(LOCATION, v);
    }
    Ok(r)
}

/// Reads an event (drafts only for their organization and admins).
#[utoipa::path(get, path = "/events/{id}", tag = "events", params(("id" = uuid::Uuid, Path, description = "Event id")),
    responses(
        (status = 200, description = "The event; `ETag` carries its version", body = Event),
        (status = 404, description = "No such event visible to the caller", body = ErrorBody),
    ))]
pub async fn get(
    State(s): State<AppState>,
    auth: MaybeAuthenticated,
    Path(id): Path<EventId>,
) -> ApiResult<Response> {
    let event = s.ems.event(&auth.actor(), id).await?;
    Ok(with_etag(StatusCode::OK, &event))
}

/// Edits an event; `If-Match` must carry its current `ETag`.
#[utoipa::path(patch, path = "/events/{id}", tag = "events", request_body = EventPatch, security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Event id"), ("If-Match" = String, Header, description = "The event's ETag")),
    responses(
        (status = 200, description = "Updated", body = Event),
        (status = 412, description = "Changed since that ETag", body = ErrorBody),
        (status = 428, description = "No If-Match", body = ErrorBody),
    ))]
pub async fn update(
    State(s): State<AppState>,
    auth: Authenticated,
    Path(id): Path<EventId>,
    headers: HeaderMap,
    Json(patch): Json<EventPatch>,
) -> ApiResult<Response> {
    let version = if_match(&headers)?;
    let event = s.ems.update_event(&auth.actor, id, version, patch).await?;
    Ok(with_etag(StatusCode::OK, &event))
}

/// Publishes a draft: it becomes visible and on sale.
#[utoipa::path(post, path = "/events/{id}/publish", tag = "events", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Event id"), ("If-Match" = String, Header, description = "The event's ETag")),
    responses(
        (status = 200, description = "Published", body = Event),
        (status = 409, description = "Not a draft", body = ErrorBody),
        (status = 412, description = "Changed since that ETag", body = ErrorBody),
    ))]
pub async fn publish(
    State(s): State<AppState>,
    auth: Authenticated,
    Path(id): Path<EventId>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let event = s
        .ems
        .publish_event(&auth.actor, id, if_match(&headers)?)
        .await?;
    Ok(with_etag(StatusCode::OK, &event))
}

/// New start and end of an event.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reschedule {
    /// New start (RFC 3339).
    pub starts_at: DateTime<Utc>,
    /// New end (RFC 3339).
    pub ends_at: DateTime<Utc>,
}

/// Moves an event; bookings stay valid and holders are told (domain event).
#[utoipa::path(post, path = "/events/{id}/reschedule", tag = "events", request_body = Reschedule, security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Event id"), ("If-Match" = String, Header, description = "The event's ETag")),
    responses(
        (status = 200, description = "Rescheduled", body = Event),
        (status = 412, description = "Changed since that ETag", body = ErrorBody),
    ))]
pub async fn reschedule(
    State(s): State<AppState>,
    auth: Authenticated,
    Path(id): Path<EventId>,
    headers: HeaderMap,
    Json(body): Json<Reschedule>,
) -> ApiResult<Response> {
    let event = s
        .ems
        .reschedule_event(
            &auth.actor,
            id,
            if_match(&headers)?,
            body.starts_at,
            body.ends_at,
        )
        .await?;
    Ok(with_etag(StatusCode::OK, &event))
}

/// Marks a past event completed: sales stop.
#[utoipa::path(post, path = "/events/{id}/complete", tag = "events", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Event id"), ("If-Match" = String, Header, description = "The event's ETag")),
    responses((status = 200, description = "Completed", body = Event)))]
pub async fn complete(
    State(s): State<AppState>,
    auth: Authenticated,
    Path(id): Path<EventId>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let event = s
        .ems
        .complete_event(&auth.actor, id, if_match(&headers)?)
        .await?;
    Ok(with_etag(StatusCode::OK, &event))
}

/// Cancels an event: open holds are released and paid bookings refunded.
#[utoipa::path(post, path = "/events/{id}/cancel", tag = "events", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Event id"), ("If-Match" = String, Header, description = "The event's ETag")),
    responses(
        (status = 200, description = "Cancelled, with what it released and refunded", body = EventCancellation),
        (status = 412, description = "Changed since that ETag", body = ErrorBody),
    ))]
pub async fn cancel(
    State(s): State<AppState>,
    auth: Authenticated,
    Path(id): Path<EventId>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let c = s
        .ems
        .cancel_event(&auth.actor, id, if_match(&headers)?)
        .await?;
    Ok((StatusCode::OK, ETag(c.event.version), axum::Json(c)).into_response())
}

/// The tiers of an event.
#[utoipa::path(get, path = "/events/{id}/tiers", tag = "inventory", params(("id" = uuid::Uuid, Path, description = "Event id")),
    responses((status = 200, description = "Its tiers", body = Vec<TicketTier>)))]
pub async fn tiers(
    State(s): State<AppState>,
    auth: MaybeAuthenticated,
    Path(id): Path<EventId>,
) -> ApiResult<Json<Vec<TicketTier>>> {
    Ok(Json(s.ems.tiers(&auth.actor(), id).await?))
}

/// Adds a ticket tier (price, capacity, per-order limits, sales window, surge
/// pricing policy).
#[utoipa::path(post, path = "/events/{id}/tiers", tag = "inventory", request_body = NewTier, security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Event id")),
    responses(
        (status = 201, description = "Added", body = TicketTier),
        (status = 422, description = "Invalid tier", body = ErrorBody),
    ))]
pub async fn add_tier(
    State(s): State<AppState>,
    auth: Authenticated,
    Path(id): Path<EventId>,
    Json(new): Json<NewTier>,
) -> ApiResult<Response> {
    let tier = s.ems.add_tier(&auth.actor, id, new).await?;
    Ok((StatusCode::CREATED, ETag(tier.version), axum::Json(tier)).into_response())
}

/// Replaces a tier's definition (and its pricing policy); `If-Match` carries
/// the tier's `ETag`.
#[utoipa::path(put, path = "/events/{id}/tiers/{tier_id}", tag = "inventory", request_body = NewTier, security(("bearer" = [])),
    params(
        ("id" = uuid::Uuid, Path, description = "Event id"),
        ("tier_id" = uuid::Uuid, Path, description = "Tier id"),
        ("If-Match" = String, Header, description = "The tier's ETag"),
    ),
    responses(
        (status = 200, description = "Updated", body = TicketTier),
        (status = 412, description = "Changed since that ETag", body = ErrorBody),
    ))]
pub async fn update_tier(
    State(s): State<AppState>,
    auth: Authenticated,
    Path((id, tier_id)): Path<(EventId, TierId)>,
    headers: HeaderMap,
    Json(new): Json<NewTier>,
) -> ApiResult<Response> {
    let tier = s
        .ems
        .update_tier(&auth.actor, id, tier_id, if_match(&headers)?, new)
        .await?;
    Ok((StatusCode::OK, ETag(tier.version), axum::Json(tier)).into_response())
}

/// A shared quota several tiers draw on.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewQuota {
    /// Its name.
    pub name: String,
    /// Units shared by its tiers.
    pub capacity: u32,
}

/// Adds a shared quota (tiers name it in `shared_quotas`).
#[utoipa::path(post, path = "/events/{id}/quotas", tag = "inventory", request_body = NewQuota, security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Event id")),
    responses((status = 201, description = "Added", body = SharedQuota)))]
pub async fn add_quota(
    State(s): State<AppState>,
    auth: Authenticated,
    Path(id): Path<EventId>,
    Json(new): Json<NewQuota>,
) -> ApiResult<Response> {
    let quota = s
        .ems
        .add_shared_quota(&auth.actor, id, &new.name, new.capacity)
        .await?;
    Ok(super::created(quota))
}

/// Units available per tier and quota, and current surge prices.
#[utoipa::path(get, path = "/events/{id}/availability", tag = "inventory",
    params(("id" = uuid::Uuid, Path, description = "Event id")),
    responses((status = 200, description = "Availability", body = EventAvailability)))]
pub async fn availability(
    State(s): State<AppState>,
    auth: MaybeAuthenticated,
    Path(id): Path<EventId>,
) -> ApiResult<Json<EventAvailability>> {
    Ok(Json(s.ems.availability(&auth.actor(), id).await?))
}

/// What an order would cost.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuoteRequest {
    /// Tiers and quantities.
    pub items: Vec<HoldItem>,
    /// A promo code.
    #[serde(default)]
    pub coupon: Option<String>,
}

/// Prices an order (surge, coupon, fees, tax) without holding anything.
#[utoipa::path(post, path = "/events/{id}/quote", tag = "inventory", request_body = QuoteRequest,
    params(("id" = uuid::Uuid, Path, description = "Event id")),
    responses(
        (status = 200, description = "The price", body = Quote),
        (status = 422, description = "Invalid order", body = ErrorBody),
    ))]
pub async fn quote(
    State(s): State<AppState>,
    auth: MaybeAuthenticated,
    Path(id): Path<EventId>,
    Json(body): Json<QuoteRequest>,
) -> ApiResult<Json<Quote>> {
    Ok(Json(
        s.ems
            .quote(&auth.actor(), id, &body.items, body.coupon.as_deref())
            .await?,
    ))
}
