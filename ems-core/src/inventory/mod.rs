//! Ticket inventory: tiers, quotas and holds. Capacity is counted by quotas; a
//! hold reserves units on every quota it touches, atomically, for a limited time.
//!
//! Every quota keeps one counter of units *taken* (held + sold). Confirming a hold
//! changes only the hold's own record; a quota is touched once when units are held
//! and once when they come back (release, expiry, cancellation).

mod combiner;
mod rules;
mod service;
mod store;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use combiner::HoldBatching;
pub(crate) use combiner::{HoldCombiner, ReleaseOp};
pub use rules::{
    availability_of, check_capacity, check_new_tier, check_tier_change, demand_of, hold_end_events,
    merge_demand, plan_hold, plan_ignores_sales, quota_capacity, velocity_lookback, Demand,
    HoldPlan, QuotaKey, RecentSales,
};
pub use service::{HoldOptions, MAX_PER_ORDER};
pub use store::InventoryStore;

use crate::id::{BookingId, EventId, HoldId, OrganizationId, QuotaId, TierId, UserId};
use crate::money::Money;
use crate::pricing::{Quote, SurgePolicy};

/// A kind of ticket for an event (e.g. "Standing", "VIP") with its own capacity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TicketTier {
    /// Its id.
    pub id: TierId,
    /// The event it belongs to.
    pub event_id: EventId,
    /// Display name, unique within the event.
    pub name: String,
    /// Price of one ticket, in the event's currency.
    pub price: Money,
    /// Units this tier may sell (its own quota).
    pub capacity: u32,
    /// Smallest quantity per order.
    pub min_per_order: u32,
    /// Largest quantity per order.
    pub max_per_order: u32,
    /// Sales open at (inclusive); `None` = when the event is published.
    pub sales_start: Option<DateTime<Utc>>,
    /// Sales close at (exclusive); `None` = when the event starts.
    pub sales_end: Option<DateTime<Utc>>,
    /// Shared quotas this tier also draws on.
    pub shared_quotas: Vec<QuotaId>,
    /// Surge rules on top of `price` (none: every unit costs `price`).
    #[serde(default)]
    pub pricing: SurgePolicy,
    /// Optimistic-concurrency version.
    pub version: u64,
}

/// Input for [`Ems::add_tier`](crate::Ems::add_tier).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewTier {
    /// Display name.
    pub name: String,
    /// Unit price (≥ 0, whole minor units, event currency).
    pub price: Money,
    /// Units (> 0).
    pub capacity: u32,
    /// Smallest quantity per order (≥ 1).
    pub min_per_order: u32,
    /// Largest quantity per order (≥ min).
    pub max_per_order: u32,
    /// Sales window start.
    pub sales_start: Option<DateTime<Utc>>,
    /// Sales window end.
    pub sales_end: Option<DateTime<Utc>>,
    /// Shared quotas to draw on.
    pub shared_quotas: Vec<QuotaId>,
    /// Surge rules on top of `price`.
    #[serde(default)]
    pub pricing: SurgePolicy,
}

impl NewTier {
    /// A tier with `capacity` units at `price`, 1..=10 per order, on sale while the event is.
    pub fn new(name: impl Into<String>, price: Money, capacity: u32) -> Self {
        Self {
            name: name.into(),
            price,
            capacity,
            min_per_order: 1,
            max_per_order: 10,
            sales_start: None,
            sales_end: None,
            shared_quotas: Vec::new(),
            pricing: SurgePolicy::default(),
        }
    }

    /// Prices units by a surge policy on top of the base price.
    pub fn pricing(mut self, policy: SurgePolicy) -> Self {
        self.pricing = policy;
        self
    }

    /// Sets the per-order limits.
    pub fn per_order(mut self, min: u32, max: u32) -> Self {
        self.min_per_order = min;
        self.max_per_order = max;
        self
    }

    /// Sets the sales window.
    pub fn sales_window(
        mut self,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
    ) -> Self {
        self.sales_start = start;
        self.sales_end = end;
        self
    }

    /// Draws also on a shared quota.
    pub fn shared_quota(mut self, quota: QuotaId) -> Self {
        self.shared_quotas.push(quota);
        self
    }
}

/// A capacity several tiers draw on together (e.g. "all seated tiers: 500").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SharedQuota {
    /// Its id.
    pub id: QuotaId,
    /// The event it belongs to.
    pub event_id: EventId,
    /// Display name.
    pub name: String,
    /// Units.
    pub capacity: u32,
}

/// One line of a hold request: `quantity` units of a tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HoldItem {
    /// The tier.
    pub tier_id: TierId,
    /// Units (> 0).
    pub quantity: u32,
}

/// What a store is asked to reserve. Built by the service, checked again by the
/// store inside its atomic operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldRequest {
    /// Id the new hold gets.
    pub id: HoldId,
    /// The event.
    pub event_id: EventId,
    /// Who holds the units.
    pub customer: UserId,
    /// The units wanted; tiers distinct.
    pub items: Vec<HoldItem>,
    /// The operation's "now".
    pub now: DateTime<Utc>,
    /// When the hold lapses.
    pub expires_at: DateTime<Utc>,
    /// Promo code to apply; the store consumes one use atomically with the hold.
    #[serde(default)]
    pub coupon: Option<String>,
}

/// One hold to give up, in [`InventoryStore::release_hold_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldRelease {
    /// The hold.
    pub hold_id: HoldId,
    /// Its event (requests of one event share the event's counters).
    pub event_id: EventId,
    /// The operation's "now".
    pub now: DateTime<Utc>,
}

/// A held line with the price locked at hold time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HoldLine {
    /// The tier.
    pub tier_id: TierId,
    /// Units held.
    pub quantity: u32,
    /// Price of each unit, locked until the hold lapses.
    pub unit_price: Money,
}

/// Where a hold stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HoldStatus {
    /// Units reserved until `expires_at`.
    Active,
    /// Units sold to a booking.
    Confirmed,
    /// Given up; units returned.
    Released,
    /// Lapsed; units returned.
    Expired,
}

/// Units reserved for a customer for a limited time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Hold {
    /// Its id.
    pub id: HoldId,
    /// The event.
    pub event_id: EventId,
    /// The event's organization.
    pub organization: OrganizationId,
    /// Who holds it.
    pub customer: UserId,
    /// What is held, with locked prices.
    pub lines: Vec<HoldLine>,
    /// What the units cost, locked until the hold lapses: surge per unit, fees, tax.
    pub quote: Quote,
    /// `quote.total`.
    pub total: Money,
    /// State.
    pub status: HoldStatus,
    /// The booking made on it, if any.
    pub booking_id: Option<BookingId>,
    /// The coupon whose use it holds.
    pub coupon: Option<crate::id::CouponId>,
    /// When it was placed.
    pub created_at: DateTime<Utc>,
    /// When it lapses if still active.
    pub expires_at: DateTime<Utc>,
}

/// Whose a hold is and of which event: see
/// [`InventoryStore::hold_owner`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldOwner {
    /// The event.
    pub event_id: EventId,
    /// The event's organization.
    pub organization: OrganizationId,
    /// Who holds it.
    pub customer: UserId,
}

impl HoldOwner {
    /// `hold`'s owner.
    pub fn of(hold: &Hold) -> Self {
        Self {
            event_id: hold.event_id,
            organization: hold.organization,
            customer: hold.customer,
        }
    }
}

impl Hold {
    /// Units held across all lines.
    pub fn quantity(&self) -> u32 {
        self.lines.iter().map(|l| l.quantity).sum()
    }

    /// The state as of `now`: an active hold past its expiry counts as expired even
    /// before a store has swept it.
    pub fn status_at(&self, now: DateTime<Utc>) -> HoldStatus {
        self.terms().status_at(now)
    }

    /// What booking this hold depends on, borrowed (see [`HoldTerms`]).
    pub fn terms(&self) -> HoldTerms<'_> {
        HoldTerms {
            id: self.id,
            event_id: self.event_id,
            customer: self.customer,
            status: self.status,
            expires_at: self.expires_at,
            booking_id: self.booking_id,
            lines: &self.lines,
            total: self.total,
        }
    }
}

/// What booking a hold depends on
/// ([`check_bookable_terms`](crate::booking::check_bookable_terms)), borrowed
/// from the hold: a store that keeps holds in a shape of its own lends these
/// instead of building a whole [`Hold`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HoldTerms<'a> {
    /// The hold.
    pub id: HoldId,
    /// Its event.
    pub event_id: EventId,
    /// Who holds it.
    pub customer: UserId,
    /// Its state as stored.
    pub status: HoldStatus,
    /// When it lapses if still active.
    pub expires_at: DateTime<Utc>,
    /// The booking made on it, if any.
    pub booking_id: Option<BookingId>,
    /// What is held.
    pub lines: &'a [HoldLine],
    /// What the units cost.
    pub total: Money,
}

impl HoldTerms<'_> {
    /// The state as of `now` (as [`Hold::status_at`]).
    pub fn status_at(&self, now: DateTime<Utc>) -> HoldStatus {
        if self.status == HoldStatus::Active && now >= self.expires_at {
            HoldStatus::Expired
        } else {
            self.status
        }
    }
}

/// Availability of one quota.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuotaAvailability {
    /// Which quota.
    pub quota: QuotaKey,
    /// Its capacity.
    pub capacity: u32,
    /// Units taken (held by unexpired holds + sold).
    pub taken: u32,
}

impl QuotaAvailability {
    /// `capacity - taken`.
    pub fn available(&self) -> u32 {
        self.capacity.saturating_sub(self.taken)
    }
}

/// Availability of a tier: the least available of every quota it draws on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TierAvailability {
    /// The tier.
    pub tier_id: TierId,
    /// Units that can be held now.
    pub available: u32,
    /// Units taken on the tier's own quota.
    pub taken: u32,
    /// The tier's capacity.
    pub capacity: u32,
    /// Units held in each of the tier's velocity windows (see
    /// [`SurgePolicy::velocity_windows`]), for price previews.
    pub recent: [u32; 4],
}

/// Availability of an event, as of the `now` given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventAvailability {
    /// The event.
    pub event_id: EventId,
    /// Every quota: the event's, each tier's, each shared one.
    pub quotas: Vec<QuotaAvailability>,
    /// Per tier, in creation order.
    pub tiers: Vec<TierAvailability>,
}

impl EventAvailability {
    /// The event-wide quota.
    pub fn event_quota(&self) -> Option<&QuotaAvailability> {
        self.quotas.iter().find(|q| q.quota == QuotaKey::Event)
    }

    /// One tier's availability.
    pub fn tier(&self, tier: TierId) -> Option<&TierAvailability> {
        self.tiers.iter().find(|t| t.tier_id == tier)
    }
}
