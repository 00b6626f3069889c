//! Payments: the [`PaymentGateway`] port, a registry that builds gateways by name,
//! a scriptable [`FakeGateway`], a [`ResilientGateway`] wrapper, and the payment and
//! refund records the store keeps (each payment and each refund its own record).

mod fake;
mod gateway;
mod registry;
mod resilient;
mod store;

pub use fake::{FakeBehavior, FakeGateway};
pub use gateway::*;
pub use registry::{GatewayConfig, GatewayFactory, GatewayRegistry};
pub use resilient::{ResiliencePolicy, ResilientGateway};
pub use store::{
    check_payment_version, check_refund_change, check_refundable, payment_change_event,
    refund_change_event, PaymentStore,
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::id::{BookingId, EventId, PaymentId, RefundId};
use crate::money::Money;

/// What a booking's own payment key starts with (see [`booking_payment_key`]).
const BOOKING_KEY_PREFIX: &str = "booking-";

/// The idempotency key of a booking's own payment, the one its checkout
/// opens it with: `booking-{booking id}` (hyphenated, lower case, as the
/// id's `Display` spells it), so a booking is never charged twice. A store
/// may recognise such a key by its spelling alone
/// ([`booking_of_payment_key`]) instead of indexing it.
pub fn booking_payment_key(booking: BookingId) -> String {
    crate::id::prefixed(BOOKING_KEY_PREFIX, booking.as_uuid())
}

/// The booking whose own payment key `key` is, if it is one: exactly the
/// spelling [`booking_payment_key`] gives (a key that names a booking any
/// other way, in upper case or without hyphens, is an ordinary key).
pub fn booking_of_payment_key(key: &str) -> Option<BookingId> {
    let text = key.strip_prefix(BOOKING_KEY_PREFIX)?;
    let id = uuid::Uuid::try_parse(text).ok()?;
    let mut buf = uuid::Uuid::encode_buffer();
    (id.hyphenated().encode_lower(&mut buf) == text).then_some(BookingId(id))
}

/// Whether `key` is `booking`'s own payment key ([`booking_payment_key`]):
/// its spelling compared, nothing parsed.
pub fn is_booking_payment_key(key: &str, booking: BookingId) -> bool {
    let mut buf = uuid::Uuid::encode_buffer();
    key.strip_prefix(BOOKING_KEY_PREFIX)
        .is_some_and(|id| id == booking.0.hyphenated().encode_lower(&mut buf))
}

/// Where a payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PaymentStatus {
    /// Created; the gateway has not said yes or no yet.
    Pending,
    /// Money taken.
    Succeeded,
    /// Declined or errored; nothing taken.
    Failed,
    /// Cancelled at the gateway before it completed.
    Voided,
}

/// One attempt to take money for a booking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Payment {
    /// Its id.
    pub id: PaymentId,
    /// The booking paid for.
    pub booking_id: BookingId,
    /// The booking's event.
    pub event_id: EventId,
    /// Name of the gateway (as registered in [`Ems`](crate::Ems)).
    pub gateway: String,
    /// The gateway's reference, once it answered.
    pub reference: Option<String>,
    /// Amount charged.
    pub amount: Money,
    /// Sum of succeeded refunds.
    pub refunded: Money,
    /// State.
    pub status: PaymentStatus,
    /// Why it failed, if it did.
    pub failure: Option<String>,
    /// Key sent to the gateway so a retried create never charges twice.
    pub idempotency_key: String,
    /// Creation instant.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Optimistic-concurrency version.
    pub version: u64,
}

/// Where a refund stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RefundStatus {
    /// Recorded; not yet accepted by the gateway.
    Pending,
    /// Money returned.
    Succeeded,
    /// The gateway refused or failed; may be retried.
    Failed,
}

/// Money given back on a payment (all or part).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Refund {
    /// Its id (also its idempotency key at the gateway).
    pub id: RefundId,
    /// The payment refunded.
    pub payment_id: PaymentId,
    /// The booking.
    pub booking_id: BookingId,
    /// Amount to return.
    pub amount: Money,
    /// State.
    pub status: RefundStatus,
    /// Why the refund was made.
    pub reason: String,
    /// The gateway's reference, once known.
    pub reference: Option<String>,
    /// Why it failed, if it did.
    pub failure: Option<String>,
    /// Creation instant.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Optimistic-concurrency version.
    pub version: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_spelling_a_checkout_gives_is_a_bookings_own_key() {
        let id = BookingId::new();
        let own = booking_payment_key(id);
        assert_eq!(own, format!("booking-{id}"));
        assert_eq!(booking_of_payment_key(&own), Some(id));
        assert!(is_booking_payment_key(&own, id));
        assert!(!is_booking_payment_key(&own, BookingId::new()));
        let upper = format!("booking-{}", id.0.hyphenated().to_string().to_uppercase());
        for other in [
            format!("booking-{}", id.0.simple()),
            upper,
            format!("booking-{id}-2"),
            format!("{id}"),
            "booking-".into(),
        ] {
            assert_eq!(booking_of_payment_key(&other), None, "{other}");
            assert!(!is_booking_payment_key(&other, id), "{other}");
        }
    }
}
