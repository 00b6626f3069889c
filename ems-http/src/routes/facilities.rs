//! Facilities: resources (venues, performers, decorations, catering) booked by
//! date and slot or by range, alone or as an all-or-nothing package.

use axum::extract::State;
use axum::response::Response;
use chrono::{NaiveDate, NaiveDateTime};
use ems_core::facility::{
    Alternatives, FacilityBooking, FacilityRequest, NewResource, Resource, ResourceKind,
    SlotAvailability, When,
};
use ems_core::id::{EventId, FacilityBookingId, OrganizationId, ResourceId};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{created, Json, Path, Query};
use crate::auth::{Authenticated, MaybeAuthenticated};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;

/// Creates a bookable resource of an organization (its organizers, admins).
#[utoipa::path(post, path = "/resources", tag = "facilities", request_body = NewResource, security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = Resource),
        (status = 422, description = "Invalid resource", body = ErrorBody),
    ))]
pub async fn create_resource(
    State(s): State<AppState>,
    auth: Authenticated,
    Json(new): Json<NewResource>,
) -> ApiResult<Response> {
    Ok(created(s.ems.create_resource(&auth.actor, new).await?))
}

/// A window of days.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Window {
    /// First day (YYYY-MM-DD, in the resource's time zone).
    pub from: NaiveDate,
    /// Number of days, 1..=92 (default 1).
    pub days: Option<u32>,
}

/// One day's slots and what is free in each.
#[derive(Debug, Serialize, ToSchema)]
pub struct DayAvailability {
    /// The day.
    pub date: NaiveDate,
    /// Its slots.
    pub slots: Vec<SlotAvailability>,
}

/// A resource's free units per slot, day by day.
#[utoipa::path(get, path = "/resources/{id}/availability", tag = "facilities",
    params(("id" = uuid::Uuid, Path, description = "Resource id"), Window),
    responses((status = 200, description = "Availability by day", body = Vec<DayAvailability>)))]
pub async fn availability(
    State(s): State<AppState>,
    _auth: MaybeAuthenticated,
    Path(id): Path<ResourceId>,
    Query(w): Query<Window>,
) -> ApiResult<Json<Vec<DayAvailability>>> {
    let days = w.days.unwrap_or(1);
    let window = s.ems.availability_window(id, w.from, days).await?;
    Ok(Json(
        window
            .into_iter()
            .map(|(date, slots)| DayAvailability { date, slots })
            .collect(),
    ))
}

/// A wanted time: a named slot of a day, or a range of local times.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Wanted {
    /// The day, with `slot`.
    pub date: Option<NaiveDate>,
    /// The slot's name, with `date`.
    pub slot: Option<String>,
    /// Range start (local, `YYYY-MM-DDTHH:MM:SS`), with `end`.
    pub start: Option<NaiveDateTime>,
    /// Range end (local), with `start`.
    pub end: Option<NaiveDateTime>,
    /// Units wanted (default 1).
    pub quantity: Option<u32>,
    /// At most this many suggestions of each kind (1..=50, default 5).
    pub limit: Option<u32>,
}

impl Wanted {
    fn when(&self) -> Result<When, ApiError> {
        match (&self.date, &self.slot, &self.start, &self.end) {
            (Some(date), Some(slot), None, None) => Ok(When::Slot {
                date: *date,
                slot: slot.clone(),
            }),
            (None, None, Some(start), Some(end)) => Ok(When::Range {
                start: *start,
                end: *end,
            }),
            _ => Err(ApiError::invalid(
                "when",
                "give either `date` and `slot`, or `start` and `end`",
            )),
        }
    }
}

/// The nearest free times of this resource and other free resources of its kind.
#[utoipa::path(get, path = "/resources/{id}/alternatives", tag = "facilities",
    params(("id" = uuid::Uuid, Path, description = "Resource id"), Wanted),
    responses((status = 200, description = "Alternatives", body = Alternatives)))]
pub async fn alternatives(
    State(s): State<AppState>,
    _auth: MaybeAuthenticated,
    Path(id): Path<ResourceId>,
    Query(w): Query<Wanted>,
) -> ApiResult<Json<Alternatives>> {
    let limit = w.limit.unwrap_or(5);
    if !(1..=50).contains(&limit) {
        return Err(ApiError::invalid("limit", "1..=50"));
    }
    let when = w.when()?;
    Ok(Json(
        s.ems
            .alternatives(id, &when, w.quantity.unwrap_or(1), limit as usize)
            .await?,
    ))
}

/// Resources of a kind and their slots on a day.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KindDay {
    /// `venue`, `performer`, `decoration`, `catering`, or any other word for a
    /// custom kind.
    pub kind: String,
    /// Only this organization's resources.
    pub organization: Option<uuid::Uuid>,
    /// The day.
    pub date: NaiveDate,
}

/// A resource with its slots on the day asked for.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResourceDay {
    /// The resource.
    pub resource: Resource,
    /// Its slots that day.
    pub slots: Vec<SlotAvailability>,
}

fn kind(text: &str) -> ResourceKind {
    match text.trim().to_lowercase().as_str() {
        "venue" => ResourceKind::Venue,
        "performer" => ResourceKind::Performer,
        "decoration" => ResourceKind::Decoration,
        "catering" => ResourceKind::Catering,
        other => ResourceKind::Custom(other.to_owned()),
    }
}

/// Every resource of a kind with its free units per slot on a day.
#[utoipa::path(get, path = "/resources", tag = "facilities", params(KindDay),
    responses((status = 200, description = "Resources and their slots", body = Vec<ResourceDay>)))]
pub async fn by_kind(
    State(s): State<AppState>,
    _auth: MaybeAuthenticated,
    Query(q): Query<KindDay>,
) -> ApiResult<Json<Vec<ResourceDay>>> {
    let list = s
        .ems
        .kind_availability(&kind(&q.kind), q.organization.map(Into::into), q.date)
        .await?;
    Ok(Json(
        list.into_iter()
            .map(|(resource, slots)| ResourceDay { resource, slots })
            .collect(),
    ))
}

/// Facilities to book together: all of them or none.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PackageRequest {
    /// The organization booking (its organizers, admins).
    pub organization: OrganizationId,
    /// The event they are for, if any (cancelling it releases them).
    #[serde(default)]
    pub event: Option<EventId>,
    /// What to book.
    pub requests: Vec<FacilityRequest>,
}

/// Books a package of facilities atomically: an exclusive resource is never
/// double-booked and stocked ones never exceed their stock.
#[utoipa::path(post, path = "/facility-bookings", tag = "facilities", request_body = PackageRequest, security(("bearer" = [])),
    responses(
        (status = 201, description = "Booked", body = Vec<FacilityBooking>),
        (status = 409, description = "Something is taken; nothing was booked", body = ErrorBody),
    ))]
pub async fn book(
    State(s): State<AppState>,
    auth: Authenticated,
    Json(p): Json<PackageRequest>,
) -> ApiResult<Response> {
    Ok(created(
        s.ems
            .book_facilities(&auth.actor, p.organization, p.event, &p.requests)
            .await?,
    ))
}

/// Cancels the package a facility booking belongs to.
#[utoipa::path(post, path = "/facility-bookings/{id}/cancel", tag = "facilities", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Facility booking id")),
    responses((status = 200, description = "The package's bookings, cancelled", body = Vec<FacilityBooking>)))]
pub async fn cancel(
    State(s): State<AppState>,
    auth: Authenticated,
    Path(id): Path<FacilityBookingId>,
) -> ApiResult<Json<Vec<FacilityBooking>>> {
    Ok(Json(s.ems.cancel_facilities(&auth.actor, id).await?))
}

/// The facilities booked for an event (its organizers, admins).
#[utoipa::path(get, path = "/events/{id}/facilities", tag = "facilities", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Event id")),
    responses((status = 200, description = "Its facility bookings", body = Vec<FacilityBooking>)))]
pub async fn of_event(
    State(s): State<AppState>,
    auth: Authenticated,
    Path(id): Path<EventId>,
) -> ApiResult<Json<Vec<FacilityBooking>>> {
    Ok(Json(s.ems.event_facilities(&auth.actor, id).await?))
}
