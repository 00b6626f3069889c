use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{DraftVisibility, Event, EventFilter};
use crate::id::{BookingId, EventId};
use crate::outbox::DomainEvent;
use crate::Result;

/// A listing query as a store executes it: filter, draft visibility and keyset position.
#[derive(Debug, Clone, PartialEq)]
pub struct EventQuery {
    /// Field filters.
    pub filter: EventFilter,
    /// Which drafts may appear.
    pub drafts: DraftVisibility,
    /// Keyset: strictly after this `(starts_at, id)`.
    pub after: Option<(DateTime<Utc>, EventId)>,
    /// Maximum rows to return (the service asks one more than the page size).
    pub limit: u32,
}

/// What [`EventStore::cancel_event`] did.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventCancellation {
    /// The event, now cancelled.
    pub event: Event,
    /// Active holds that were released.
    pub released_holds: u32,
    /// Pending bookings that were failed.
    pub failed_bookings: Vec<BookingId>,
    /// Confirmed bookings that still need cancelling and refunding.
    pub confirmed_bookings: Vec<BookingId>,
}

/// Storage port for events.
///
/// # Contract
/// - `insert_event` stores the event with its capacity quota (nothing taken) and
///   appends `EventCreated`.
/// - `update_event` stores `event` only if the stored version is `event.version - 1`
///   (else [`Error::Conflict`](crate::Error::Conflict), nothing stored), refuses a
///   capacity below the units already taken on the event (`InvalidInput` on
///   `capacity`), and appends `change` in the same atomic step.
/// - `cancel_event` checks the version the same way, refuses a completed event, and
///   atomically marks it cancelled, releases every active hold, fails every pending
///   booking, and appends the events for each; confirmed bookings are returned for
///   the service to refund.
/// - `list_events` returns events matching [`EventFilter::matches`] ordered by
///   `(starts_at, id)` ascending, strictly after `query.after`, at most `query.limit`.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Stores a new event.
    async fn insert_event(&self, event: &Event) -> Result<()>;
    /// Reads an event.
    async fn event(&self, id: EventId) -> Result<Option<Event>>;
    /// Stores a changed event under optimistic concurrency and records `change`.
    async fn update_event(&self, event: &Event, change: DomainEvent) -> Result<()>;
    /// Cancels an event and everything open on it.
    async fn cancel_event(
        &self,
        id: EventId,
        expected_version: u64,
        now: DateTime<Utc>,
    ) -> Result<EventCancellation>;
    /// Lists events (see the contract for order and filters).
    async fn list_events(&self, query: &EventQuery) -> Result<Vec<Event>>;
}
