//! Bookings and the checkout saga: hold → pending booking → payment (idempotency
//! key) → confirmed booking with tickets, with compensation on every failure.

mod batch;
mod policy;
mod saga;
mod store;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use batch::{
    hold_then_open, open_one, settle_one, BookingDraft, CheckoutStore, HeldAndOpened, HoldAndOpen,
    OpenCheckout, Opened, SettlePaid, Settled,
};
pub(crate) use batch::{HoldOpenOp, OpenOp, SettleOp};
pub use policy::{RefundPolicy, RefundRule};
pub use saga::{Checkout, CheckoutRequest};
pub use store::{
    check_bookable, check_bookable_terms, check_cancel, BookingStore, CancelBooking,
    ConfirmBooking, ConfirmOutcome,
};

use crate::id::{BookingId, EventId, HoldId, OrganizationId, UserId};
use crate::inventory::HoldLine;
use crate::money::Money;

/// Where a booking stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BookingStatus {
    /// Units held, waiting for payment.
    Pending,
    /// Paid; tickets issued.
    Confirmed,
    /// Payment declined or errored, or checkout abandoned; units returned.
    Failed,
    /// The hold lapsed before payment; units returned.
    Expired,
    /// Cancelled after confirmation; tickets void, refund per policy.
    Cancelled,
    /// Paid, but the units could not be delivered (sold out after the hold
    /// lapsed, event cancelled); refunded in full.
    Unfulfilled,
}

impl BookingStatus {
    /// Whether nothing more will happen to the booking's units.
    pub fn is_final(self) -> bool {
        !matches!(self, BookingStatus::Pending)
    }
}

/// Why a booking is in its state.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum BookingReason {
    /// The gateway declined the payment.
    PaymentDeclined {
        /// The gateway's words.
        message: String,
    },
    /// The gateway could not be reached; the payment's outcome is reconciled later.
    PaymentError {
        /// What happened.
        message: String,
    },
    /// The customer gave the hold up.
    Abandoned,
    /// The hold lapsed before payment.
    HoldExpired,
    /// Payment came after the hold lapsed and the units were gone.
    SoldOutAfterExpiry,
    /// Payment came after the hold lapsed; the units were taken again.
    Reacquired,
    /// The event was called off.
    EventCancelled,
    /// The customer cancelled.
    CustomerCancelled,
    /// The organizer or an admin cancelled.
    OrganizerCancelled,
}

/// A customer's order for an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Booking {
    /// Its id.
    pub id: BookingId,
    /// The event.
    pub event_id: EventId,
    /// The event's organization.
    pub organization: OrganizationId,
    /// The buyer.
    pub customer: UserId,
    /// The hold the booking was made on.
    pub hold_id: HoldId,
    /// What was bought, at the prices locked by the hold.
    pub lines: Vec<HoldLine>,
    /// The hold's locked quote: how `total` came about.
    pub quote: crate::pricing::Quote,
    /// Amount due (`quote.total`).
    pub total: Money,
    /// State.
    pub status: BookingStatus,
    /// Why it is in that state, where it matters.
    pub reason: Option<BookingReason>,
    /// The customer's key for this checkout: the same key never makes a second booking.
    pub idempotency_key: String,
    /// Gateway the booking is paid through.
    pub gateway: String,
    /// Creation instant.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Optimistic-concurrency version.
    pub version: u64,
}

impl Booking {
    /// Units bought across all lines.
    pub fn quantity(&self) -> u32 {
        self.lines.iter().map(|l| l.quantity).sum()
    }

    /// Units bought of one tier (a tier may span several lines, one per price).
    pub fn quantity_of(&self, tier: crate::id::TierId) -> u32 {
        self.lines
            .iter()
            .filter(|l| l.tier_id == tier)
            .map(|l| l.quantity)
            .sum()
    }
}
