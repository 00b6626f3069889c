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
