//! Bookings, their payments and refunds, tickets and check-in.

use axum::extract::State;
use ems_core::booking::{Booking, Checkout};
use ems_core::id::{BookingId, EventId};
use ems_core::payment::{Payment, Refund};
use ems_core::ticket::{CheckIn, IssuedTicket};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Json, PageOf, PageParams, Path, Query};
use crate::auth::Authenticated;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;

/// The caller's bookings, newest first.
#[utoipa::path(get, path = "/me/bookings", tag = "bookings", params(PageParams), security(("bearer" = [])),
    responses((status = 200, description = "A page of bookings", body = PageOf<Booking>)))]
pub async fn mine(
    State(s): State<AppState>,
    auth: Authenticated,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<PageOf<Booking>>> {
    let page = s
        .ems
        .bookings_of_customer(&auth.actor, auth.claims.sub, page.request())
        .await?;
    Ok(Json(page.into()))
}

/// An event's bookings, newest first (its organizers, admins).
#[utoipa::path(get, path = "/events/{id}/bookings", tag = "bookings", params(("id" = uuid::Uuid, Path, description = "Event id"), PageParams), security(("bearer" = [])),
    responses((status = 200, description = "A page of bookings", body = PageOf<Booking>)))]
pub async fn of_event(
    State(s): State<AppState>,
    auth: Authenticated,
    Path(id): Path<EventId>,
    Query(page): Query<PageParams>,
) -> ApiResult<Json<PageOf<Booking>>> {
    let page = s
        .ems
        .bookings_of_event(&auth.actor, id, page.request())
        .await?;
    Ok(Json(page.into()))
}

/// A booking with its latest payment and its tickets (its customer, the
/// event's organizers, admins).
#[utoipa::path(get, path = "/bookings/{id}", tag = "bookings", params(("id" = uuid::Uuid, Path, description = "Booking id")), security(("bearer" = [])),
    responses(
        (status = 200, description = "The booking", body = Checkout),
        (status = 404, description = "Unknown or not visible", body = ErrorBody),
    ))]
pub async fn get(
    State(s): State<AppState>,
    auth: Authenticated,
    Path(id): Path<BookingId>,
) -> ApiResult<Json<Checkout>> {
    Ok(Json(s.ems.checkout_status(&auth.actor, id).await?))
}

/// Cancels a confirmed booking under the event's refund policy (full or
/// partial by deadline); the refund goes through the booking's gateway.
#[utoipa::path(post, path = "/bookings/{id}/cancel", tag = "bookings", params(("id" = uuid::Uuid, Path, description = "Booking id")), security(("bearer" = [])),
    responses(
        (status = 200, description = "Cancelled", body = Booking),
        (status = 409, description = "Not cancellable (state or deadline)", body = ErrorBody),
    ))]
pub async fn cancel(
    State(s): State<AppState>,
    auth: Authenticated,
    Path(id): Path<BookingId>,
) -> ApiResult<Json<Booking>> {
    Ok(Json(s.ems.cancel_booking(&auth.actor, id).await?))
}

/// A booking's payments and refunds, each its own record.
#[derive(Debug, Serialize, ToSchema)]
pub struct Payments {
    /// Payments, oldest first.
    pub payments: Vec<Payment>,
    /// Refunds, oldest first.
    pub refunds: Vec<Refund>,
}

/// A booking's payments and refunds.
#[utoipa::path(get, path = "/bookings/{id}/payments", tag = "bookings", params(("id" = uuid::Uuid, Path, description = "Booking id")), security(("bearer" = [])),
    responses((status = 200, description = "Payments and refunds", body = Payments)))]
pub async fn payments(
    State(s): State<AppState>,
    auth: Authenticated,
    Path(id): Path<BookingId>,
) -> ApiResult<Json<Payments>> {
    let (payments, refunds) = s.ems.payments(&auth.actor, id).await?;
    Ok(Json(Payments { payments, refunds }))
}

/// A booking's tickets with their signed codes (the data a ticket PDF or
/// wallet pass shows).
#[utoipa::path(get, path = "/bookings/{id}/tickets", tag = "tickets", params(("id" = uuid::Uuid, Path, description = "Booking id")), security(("bearer" = [])),
    responses((status = 200, description = "Tickets", body = Vec<IssuedTicket>)))]
pub async fn tickets(
    State(s): State<AppState>,
    auth: Authenticated,
    Path(id): Path<BookingId>,
) -> ApiResult<Json<Vec<IssuedTicket>>> {
    Ok(Json(s.ems.tickets(&auth.actor, id).await?))
}

/// A scanned ticket code.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Scan {
    /// The code printed on the ticket.
    pub code: String,
}

/// Checks a ticket in at the door (the event's organizers, admins): admitted
/// once; refused with the reason (unknown, wrong event, void, already checked in
/// and when).
#[utoipa::path(post, path = "/events/{id}/check-in", tag = "tickets", request_body = Scan, params(("id" = uuid::Uuid, Path, description = "Event id")), security(("bearer" = [])),
    responses((status = 200, description = "Admitted or refused with a reason", body = CheckIn)))]
pub async fn check_in(
    State(s): State<AppState>,
    auth: Authenticated,
    Path(id): Path<EventId>,
    Json(scan): Json<Scan>,
) -> ApiResult<Json<CheckIn>> {
    if scan.code.len() > 512 {
        return Err(ApiError::invalid("code", "at most 512 characters"));
    }
    Ok(Json(s.ems.check_in(&auth.actor, id, &scan.code).await?))
}
