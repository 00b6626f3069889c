//! Domain events: every state change, written by the store in the same atomic
//! operation as the change (an outbox) and readable in order from a cursor.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::booking::BookingReason;
use crate::id::*;
use crate::money::Money;
use crate::{Actor, Ems, Result};

/// Something that happened, as integrators see it (notifications, webhooks, email).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
#[allow(missing_docs)] // the field names say it; each variant is documented
pub enum DomainEvent {
    /// An organization was created.
    OrganizationCreated { organization: OrganizationId },
    /// A user registered.
    UserRegistered { user: UserId },
    /// An event was created as a draft.
    EventCreated {
        event_id: EventId,
        organization: OrganizationId,
    },
    /// An event's details changed.
    EventUpdated { event_id: EventId, version: u64 },
    /// An event went on sale.
    EventPublished { event_id: EventId },
    /// An event moved; holders of its bookings should be told.
    EventRescheduled {
        event_id: EventId,
        previous_starts_at: DateTime<Utc>,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
    },
    /// An event was called off.
    EventCancelled { event_id: EventId },
    /// An event took place.
    EventCompleted { event_id: EventId },
    /// A ticket tier was added or changed.
    TierChanged { event_id: EventId, tier_id: TierId },
    /// A shared quota was added.
    QuotaAdded {
        event_id: EventId,
        quota_id: QuotaId,
    },
    /// Units were reserved.
    HoldPlaced {
        event_id: EventId,
        hold_id: HoldId,
        customer: UserId,
        quantity: u32,
    },
    /// A hold was given up and its units returned.
    HoldReleased {
        event_id: EventId,
        hold_id: HoldId,
        quantity: u32,
    },
    /// A hold ran out of time and its units returned.
    HoldExpired {
        event_id: EventId,
        hold_id: HoldId,
        quantity: u32,
    },
    /// A booking was opened for a hold.
    BookingCreated {
        event_id: EventId,
        booking_id: BookingId,
        customer: UserId,
    },
    /// A booking was paid and its tickets issued.
    BookingConfirmed {
        event_id: EventId,
        booking_id: BookingId,
        customer: UserId,
        tickets: u32,
    },
    /// A pending booking failed (payment declined, checkout abandoned …).
    BookingFailed {
        event_id: EventId,
        booking_id: BookingId,
        reason: BookingReason,
    },
    /// A pending booking's hold expired before payment.
    BookingExpired {
        event_id: EventId,
        booking_id: BookingId,
    },
    /// A payment arrived but the units could not be delivered; it is refunded.
    BookingUnfulfilled {
        event_id: EventId,
        booking_id: BookingId,
        reason: BookingReason,
    },
    /// A confirmed booking was cancelled and its tickets voided.
    BookingCancelled {
        event_id: EventId,
        booking_id: BookingId,
        reason: BookingReason,
    },
    /// A payment was created at the gateway.
    PaymentStarted {
        booking_id: BookingId,
        payment_id: PaymentId,
        amount: Money,
    },
    /// A payment succeeded.
    PaymentSucceeded {
        booking_id: BookingId,
        payment_id: PaymentId,
        amount: Money,
    },
    /// A payment failed or was voided.
    PaymentFailed {
        booking_id: BookingId,
        payment_id: PaymentId,
        reason: String,
    },
    /// A refund was requested.
    RefundRequested {
        booking_id: BookingId,
        refund_id: RefundId,
        amount: Money,
    },
    /// A refund went through.
    RefundSucceeded {
        booking_id: BookingId,
        refund_id: RefundId,
        amount: Money,
    },
    /// A refund failed and needs a retry.
    RefundFailed {
        booking_id: BookingId,
        refund_id: RefundId,
        reason: String,
    },
    /// A ticket was admitted at the door.
    TicketCheckedIn {
        event_id: EventId,
        ticket_id: TicketId,
    },
    /// A package of facility bookings was made.
    FacilitiesBooked {
        package: PackageId,
        organization: OrganizationId,
        bookings: u32,
    },
    /// A package of facility bookings was cancelled.
    FacilitiesCancelled { package: PackageId },
}

/// A domain event with its position in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecordedEvent {
    /// Position in the log: strictly increasing, never reused.
    pub seq: u64,
    /// When the change happened (the store operation's `now`).
    pub occurred_at: DateTime<Utc>,
    /// What happened.
    pub event: DomainEvent,
}

/// Storage port for reading the domain-event log. Writes happen inside the other
/// ports' operations.
///
/// # Contract
/// - events appear in commit order; `seq` strictly increases;
/// - an event is visible only once the change that wrote it is (no reader ever sees
///   `seq` n+1 and later a new event with `seq` ≤ n);
/// - `read_events(after, limit)` returns up to `limit` events with `seq > after`.
#[async_trait]
pub trait OutboxStore: Send + Sync + 'static {
    /// Events after `after` (all from the start when `None`), oldest first.
    async fn read_events(&self, after: Option<u64>, limit: u32) -> Result<Vec<RecordedEvent>>;
    /// Drops events with `seq <= up_to` once every consumer has them; returns how many.
    async fn prune_events(&self, up_to: u64) -> Result<u64>;
}

impl Ems {
    /// Reads the domain-event log after `after`. Admins and the system only.
    pub async fn events_after(
        &self,
        actor: &Actor,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<RecordedEvent>> {
        actor.require_privileged("read domain events")?;
        if limit == 0 || limit > crate::page::MAX_PAGE_SIZE {
            return Err(crate::Error::invalid(
                "limit",
                format!("{limit} is outside 1..={}", crate::page::MAX_PAGE_SIZE),
            ));
        }
        self.port().read_events(after, limit).await
    }
}
