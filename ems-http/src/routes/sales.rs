//! Selling: holds, checkout, the payment gateway's webhook, reconciliation,
//! refund retries and coupons.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Duration;
use ems_core::booking::{BookingStatus, Checkout, CheckoutRequest};
use ems_core::id::{BookingId, CouponId, EventId, HoldId, PaymentId, RefundId, UserId};
use ems_core::inventory::{Hold, HoldItem, HoldOptions};
use ems_core::payment::{Refund, WebhookRequest};
use ems_core::pricing::{Coupon, NewCoupon};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{created, Json, Path};
use crate::auth::Authenticated;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::idempotency;
use crate::state::AppState;

/// Units to hold.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldBody {
    /// Tiers and quantities.
    pub items: Vec<HoldItem>,
    /// A promo code (one use is taken with the hold, given back on release).
    #[serde(default)]
    pub coupon: Option<String>,
    /// Seconds the hold lasts (default: the server's hold TTL).
    #[serde(default)]
    pub ttl_seconds: Option<u32>,
    /// Hold for this customer (admins only).
    #[serde(default)]
    pub on_behalf_of: Option<UserId>,
}

fn count_sold_out(s: &AppState, e: &ems_core::Error) {
    if matches!(e, ems_core::Error::SoldOut { .. }) {
        s.metrics.sold_outs.inc();
    }
}

/// Reserves units on every quota they draw on, or none; they return by
/// themselves when the hold expires.
#[utoipa::path(post, path = "/events/{id}/holds", tag = "sales", request_body = HoldBody, security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Event id")),
    responses(
        (status = 201, description = "Held", body = Hold),
        (status = 409, description = "Sold out (`details.available`) or event not on sale", body = ErrorBody),
        (status = 422, description = "Invalid order", body = ErrorBody),
    ))]
pub async fn place_hold(
    State(s): State<AppState>,
    auth: Authenticated,
    Path(id): Path<EventId>,
    Json(body): Json<HoldBody>,
) -> ApiResult<Response> {
    let options = HoldOptions {
        on_behalf_of: body.on_behalf_of,
        ttl: body.ttl_seconds.map(|s| Duration::seconds(i64::from(s))),
        coupon: body.coupon,
    };
    let hold = s
        .ems
        .place_hold(&auth.actor, id, &body.items, options)
        .await
        .inspect_err(|e| count_sold_out(&s, e))?;
    Ok(created(hold))
}

/// Reads a hold (its customer, the event's organizers, admins).
#[utoipa::path(get, path = "/holds/{id}", tag = "sales", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Hold id")),
    responses((status = 200, description = "The hold", body = Hold), (status = 404, description = "Unknown", body = ErrorBody)))]
pub async fn get_hold(
    State(s): State<AppState>,
    auth: Authenticated,
    Path(id): Path<HoldId>,
) -> ApiResult<Json<Hold>> {
    Ok(Json(s.ems.hold(&auth.actor, id).await?))
}

/// Releases a hold: its units are available again at once.
#[utoipa::path(delete, path = "/holds/{id}", tag = "sales", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Hold id")),
    responses((status = 200, description = "Released", body = Hold), (status = 409, description = "Already booked", body = ErrorBody)))]
pub async fn release_hold(
    State(s): State<AppState>,
    auth: Authenticated,
    Path(id): Path<HoldId>,
) -> ApiResult<Json<Hold>> {
    Ok(Json(s.ems.release_hold(&auth.actor, id).await?))
}

/// An order.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutBody {
    /// The event.
    pub event_id: EventId,
    /// Tiers and quantities.
    pub items: Vec<HoldItem>,
    /// A promo code.
    #[serde(default)]
    pub coupon: Option<String>,
    /// Payment gateway name (default: the server's default gateway).
    #[serde(default)]
    pub gateway: Option<String>,
    /// Buy for this customer (admins only).
    #[serde(default)]
    pub on_behalf_of: Option<UserId>,
}

/// Buys tickets: hold → pending booking → payment → confirmed booking with
/// tickets, compensated on any failure. `Idempotency-Key` is required: the same
/// key returns the same booking and never charges twice, across servers too.
#[utoipa::path(post, path = "/checkout", tag = "sales", request_body = CheckoutBody, security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, description = "The client's key for this purchase (1..=200 characters)")),
    responses(
        (status = 201, description = "Confirmed with tickets, or pending while the gateway decides", body = Checkout),
        (status = 402, description = "Payment declined; the booking says why", body = Checkout),
        (status = 409, description = "Sold out (`details.available`) or not on sale", body = ErrorBody),
        (status = 422, description = "Invalid order, or the key reused with another body", body = ErrorBody),
        (status = 428, description = "No Idempotency-Key", body = ErrorBody),
    ))]
pub async fn checkout(
    State(s): State<AppState>,
    auth: Authenticated,
    headers: HeaderMap,
    Json(body): Json<CheckoutBody>,
) -> ApiResult<Response> {
    let key = headers
        .get(idempotency::HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::PRECONDITION_REQUIRED,
                "precondition_required",
                "checkout needs an Idempotency-Key header",
            )
        })?;
    let request = CheckoutRequest {
        event_id: body.event_id,
        items: body.items,
        idempotency_key: key.to_owned(),
        gateway: body.gateway,
        on_behalf_of: body.on_behalf_of,
        coupon: body.coupon,
    };
    let checkout = s
        .ems
        .checkout(&auth.actor, request)
        .await
        .inspect_err(|e| count_sold_out(&s, e))?;
    let outcome = super::tag(&checkout.booking.status);
    s.metrics
        .checkouts
        .with_label_values(&[outcome.as_str()])
        .inc();
    let status = match checkout.booking.status {
        BookingStatus::Failed => StatusCode::PAYMENT_REQUIRED,
        _ => StatusCode::CREATED,
    };
    Ok((status, axum::Json(checkout)).into_response())
}

/// A gateway's webhook: signature checked, deliveries idempotent (duplicates and
/// out-of-order deliveries change nothing twice).
#[utoipa::path(post, path = "/webhooks/{gateway}", tag = "sales",
    params(
        ("gateway" = String, Path, description = "Gateway name"),
        ("ems-signature" = String, Header, description = "The gateway's signature of the raw body"),
    ),
    request_body(content = String, description = "The gateway's payload, verbatim", content_type = "application/json"),
    responses(
        (status = 200, description = "Applied (or already applied)", body = WebhookAck),
        (status = 400, description = "Signature missing or invalid", body = ErrorBody),
        (status = 404, description = "Unknown gateway", body = ErrorBody),
    ))]
pub async fn webhook(
    State(s): State<AppState>,
    Path(gateway): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<WebhookAck>> {
    let signature = headers
        .get(s.webhook_signature_header.as_str())
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if signature.is_none() {
        return Err(ApiError::bad_request(format!(
            "missing {} header",
            s.webhook_signature_header
        )));
    }
    let request = WebhookRequest {
        signature,
        body: body.to_vec(),
    };
    let result = s
        .ems
        .handle_webhook(&gateway, &request)
        .await
        .map_err(|e| match e {
            ems_core::Error::Payment(ems_core::payment::GatewayError::InvalidSignature) => {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_signature",
                    "webhook signature invalid",
                )
            }
            other => other.into(),
        })?;
    Ok(Json(WebhookAck {
        booking: result.as_ref().map(|c| c.booking.id),
        status: result.map(|c| super::tag(&c.booking.status)),
    }))
}

/// What a webhook changed.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAck {
    /// The booking it concerned, if any.
    pub booking: Option<BookingId>,
    /// The booking's status after it.
    pub status: Option<String>,
}

/// Asks the gateway for a payment's state and finishes its booking accordingly
/// (admins).
#[utoipa::path(post, path = "/payments/{id}/reconcile", tag = "sales", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Payment id")),
    responses((status = 200, description = "The booking after reconciliation", body = Checkout)))]
pub async fn reconcile(
    State(s): State<AppState>,
    auth: Authenticated,
    Path(id): Path<PaymentId>,
) -> ApiResult<Json<Checkout>> {
    Ok(Json(s.ems.reconcile_payment(&auth.actor, id).await?))
}

/// Retries a failed refund.
#[utoipa::path(post, path = "/refunds/{id}/retry", tag = "sales", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Refund id")),
    responses((status = 200, description = "The refund after the retry", body = Refund)))]
pub async fn retry_refund(
    State(s): State<AppState>,
    auth: Authenticated,
    Path(id): Path<RefundId>,
) -> ApiResult<Json<Refund>> {
    Ok(Json(s.ems.retry_refund(&auth.actor, id).await?))
}

/// Creates a promo code for an organization (its organizers, admins).
#[utoipa::path(post, path = "/coupons", tag = "sales", request_body = NewCoupon, security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = Coupon),
        (status = 409, description = "Code taken in this organization", body = ErrorBody),
    ))]
pub async fn create_coupon(
    State(s): State<AppState>,
    auth: Authenticated,
    Json(new): Json<NewCoupon>,
) -> ApiResult<Response> {
    Ok(created(s.ems.create_coupon(&auth.actor, new).await?))
}

/// How often a coupon was used.
#[derive(Debug, Serialize, ToSchema)]
pub struct CouponUses {
    /// The coupon.
    pub coupon: CouponId,
    /// Uses (holds and sales that kept it).
    pub uses: u32,
}

/// A coupon's use count (its organizers, admins).
#[utoipa::path(get, path = "/coupons/{id}/uses", tag = "sales", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Coupon id")),
    responses((status = 200, description = "Uses", body = CouponUses)))]
pub async fn coupon_uses(
    State(s): State<AppState>,
    auth: Authenticated,
    Path(id): Path<CouponId>,
) -> ApiResult<Json<CouponUses>> {
    let uses = s.ems.coupon_uses(&auth.actor, id).await?;
    Ok(Json(CouponUses { coupon: id, uses }))
}
