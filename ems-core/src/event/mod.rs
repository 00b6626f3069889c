//! Events: their lifecycle (Draft → Published → Rescheduled → Completed, or Cancelled),
//! search, and the storage port that persists them.

mod service;
pub(crate) mod service_helpers {
    pub(crate) use super::service::{validate_capacity, validate_text};
}
mod store;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

pub use service::{NewEventBuilder, MAX_CAPACITY};
pub use store::{EventCancellation, EventQuery, EventStore};

use crate::booking::RefundPolicy;
use crate::id::{EventId, OrganizationId};
use crate::money::Currency;
use crate::pricing::{Fees, Tax};

/// Where an event stands in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventStatus {
    /// Being prepared; invisible to customers, nothing on sale.
    Draft,
    /// On sale.
    Published,
    /// Moved to another date; still on sale, bookings stay valid.
    Rescheduled,
    /// Took place; no more sales.
    Completed,
    /// Called off: holds released, paid bookings refunded.
    Cancelled,
}

impl EventStatus {
    /// Whether tickets can be sold in this state.
    pub fn is_on_sale(self) -> bool {
        matches!(self, EventStatus::Published | EventStatus::Rescheduled)
    }

    /// Whether the event is visible to customers.
    pub fn is_public(self) -> bool {
        !matches!(self, EventStatus::Draft)
    }

    /// Whether no further transition is possible.
    pub fn is_final(self) -> bool {
        matches!(self, EventStatus::Completed | EventStatus::Cancelled)
    }
}

/// Where an event takes place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VenueInfo {
    /// Venue name.
    pub name: String,
    /// City (searchable).
    pub city: String,
    /// Street address.
    pub address: Option<String>,
}

/// An event people buy tickets for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    /// Its id.
    pub id: EventId,
    /// The organization running it.
    pub organization: OrganizationId,
    /// Title (searchable).
    pub title: String,
    /// Description (searchable).
    pub description: String,
    /// Free-form category, e.g. `"concert"` (filterable, compared case-insensitively).
    pub category: String,
    /// Where it takes place.
    pub venue: VenueInfo,
    /// The venue's time zone, for display and for "day" boundaries.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "Europe/Lisbon"))]
    pub time_zone: Tz,
    /// Start instant.
    pub starts_at: DateTime<Utc>,
    /// End instant (after `starts_at`).
    pub ends_at: DateTime<Utc>,
    /// Total capacity of the event across all tiers.
    pub capacity: u32,
    /// Currency every tier of the event is priced in.
    pub currency: Currency,
    /// What a customer gets back on cancellation.
    pub refund_policy: RefundPolicy,
    /// Service fees added to every order.
    #[serde(default)]
    pub fees: Fees,
    /// Tax on tickets and fees.
    #[serde(default)]
    pub tax: Option<Tax>,
    /// Lifecycle state.
    pub status: EventStatus,
    /// The start before the latest reschedule.
    pub rescheduled_from: Option<DateTime<Utc>>,
    /// Optimistic-concurrency version; starts at 1, +1 on every change.
    pub version: u64,
    /// Creation instant.
    pub created_at: DateTime<Utc>,
    /// Last change instant.
    pub updated_at: DateTime<Utc>,
}

/// Input for [`Ems::create_event`](crate::Ems::create_event). Build it with
/// [`NewEvent::builder`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewEvent {
    /// Owning organization.
    pub organization: OrganizationId,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Category.
    pub category: String,
    /// Venue.
    pub venue: VenueInfo,
    /// IANA time zone of the venue.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "Europe/Lisbon"))]
    pub time_zone: Tz,
    /// Start.
    pub starts_at: DateTime<Utc>,
    /// End.
    pub ends_at: DateTime<Utc>,
    /// Total capacity (> 0).
    pub capacity: u32,
    /// Pricing currency.
    pub currency: Currency,
    /// Refund policy.
    pub refund_policy: RefundPolicy,
    /// Service fees.
    #[serde(default)]
    pub fees: Fees,
    /// Tax.
    #[serde(default)]
    pub tax: Option<Tax>,
}

/// A partial update of an event's descriptive fields; `None` leaves a field as it is.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventPatch {
    /// New title.
    pub title: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New category.
    pub category: Option<String>,
    /// New venue.
    pub venue: Option<VenueInfo>,
    /// New total capacity; must not fall below units already taken.
    pub capacity: Option<u32>,
    /// New refund policy (applies to later cancellations).
    pub refund_policy: Option<RefundPolicy>,
    /// New fees (apply to later holds).
    pub fees: Option<Fees>,
    /// New tax (`Some(None)` removes it; applies to later holds).
    pub tax: Option<Option<Tax>>,
}

/// Filters for [`Ems::list_events`](crate::Ems::list_events). All set filters must match.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventFilter {
    /// Only this organization's events.
    pub organization: Option<OrganizationId>,
    /// Only these states (drafts are visible only to their organizers and admins).
    pub statuses: Option<Vec<EventStatus>>,
    /// Category, case-insensitive exact match.
    pub category: Option<String>,
    /// Starting at or after.
    pub starts_from: Option<DateTime<Utc>>,
    /// Starting strictly before.
    pub starts_before: Option<DateTime<Utc>>,
    /// Case-insensitive substring of title or description.
    pub text: Option<String>,
    /// City, case-insensitive exact match.
    pub city: Option<String>,
    /// Case-insensitive substring of the venue name.
    pub venue: Option<String>,
}

/// Which drafts a listing may show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DraftVisibility {
    /// No drafts.
    None,
    /// Drafts of this organization.
    Organization(OrganizationId),
    /// All drafts.
    All,
}

impl EventFilter {
    /// Whether `event` passes the filter and draft visibility (the reference
    /// semantics every backend's query must reproduce).
    pub fn matches(&self, event: &Event, drafts: DraftVisibility) -> bool {
        if event.status == EventStatus::Draft {
            let visible = match drafts {
                DraftVisibility::None => false,
                DraftVisibility::Organization(org) => org == event.organization,
                DraftVisibility::All => true,
            };
            if !visible {
                return false;
            }
        }
        let ci_eq = |a: &str, b: &str| {
            a.trim().eq_ignore_ascii_case(b.trim())
                || a.trim().to_lowercase() == b.trim().to_lowercase()
        };
        let contains =
            |hay: &str, needle: &str| hay.to_lowercase().contains(&needle.to_lowercase());
        self.organization.is_none_or(|o| o == event.organization)
            && self
                .statuses
                .as_ref()
                .is_none_or(|s| s.contains(&event.status))
            && self
                .category
                .as_deref()
                .is_none_or(|c| ci_eq(c, &event.category))
            && self.starts_from.is_none_or(|t| event.starts_at >= t)
            && self.starts_before.is_none_or(|t| event.starts_at < t)
            && self
                .text
                .as_deref()
                .is_none_or(|t| contains(&event.title, t) || contains(&event.description, t))
            && self
                .city
                .as_deref()
                .is_none_or(|c| ci_eq(c, &event.venue.city))
            && self
                .venue
                .as_deref()
                .is_none_or(|v| contains(&event.venue.name, v))
    }
}
