use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    EventAvailability, Hold, HoldOwner, HoldRelease, HoldRequest, SharedQuota, TicketTier,
};
use crate::id::{EventId, HoldId, UserId};
use crate::Result;

/// Storage port for tiers, quotas and holds.
///
/// # Contract
/// - `try_hold` reads the event and its tiers, applies [`plan_hold`](super::plan_hold),
///   and reserves the planned units on **every** quota or on none: if any quota
///   lacks room it returns [`Error::SoldOut`](crate::Error::SoldOut) naming it and
///   changes nothing. Expired holds of the event never count against availability
///   (a store releases them lazily here, or excludes them). On success it appends
///   `HoldPlaced`.
/// - Availability never goes negative and `taken` never exceeds `capacity` on any
///   quota, whatever the concurrency, across any number of store handles.
/// - `release_hold` returns the units of an active hold (appending `HoldReleased`)
///   and fails its pending booking with `Abandoned`; releasing an already released
///   or expired hold is a no-op returning it; a confirmed hold is `InvalidState`.
/// - `sweep_expired` marks up to `limit` active holds with `expires_at <= now` as
///   expired, returns their units, expires their pending bookings, and appends
///   `HoldExpired` / `BookingExpired`; returns how many holds it expired.
/// - `purge_ended_holds` forgets up to `limit` released or expired holds that
///   carry no booking and were created before `created_before`; `hold` returns
///   `None` for them afterwards. Holds with a booking are kept (a late payment
///   may still need them). Returns how many were forgotten.
/// - `insert_tier` refuses tiers of a missing, cancelled or completed event,
///   duplicate names within the event, and shared quotas of another event.
/// - `update_tier` applies optimistic concurrency on `version` and refuses a
///   capacity below the units already taken on the tier.
#[async_trait]
pub trait InventoryStore: Send + Sync + 'static {
    /// Adds a tier (and its own quota, nothing taken).
    async fn insert_tier(&self, tier: &TicketTier) -> Result<()>;
    /// Replaces a tier whose stored version is `tier.version - 1`.
    async fn update_tier(&self, tier: &TicketTier) -> Result<()>;
    /// The event's tiers in creation order.
    async fn tiers(&self, event: EventId) -> Result<Vec<TicketTier>>;
    /// Adds a shared quota.
    async fn insert_shared_quota(&self, quota: &SharedQuota) -> Result<()>;
    /// The event's shared quotas.
    async fn shared_quotas(&self, event: EventId) -> Result<Vec<SharedQuota>>;
    /// Availability of every quota and tier, as of `now`.
    async fn availability(&self, event: EventId, now: DateTime<Utc>) -> Result<EventAvailability>;
    /// Reserves units atomically (see the contract).
    async fn try_hold(&self, request: &HoldRequest) -> Result<Hold>;
    /// Reserves units as [`try_hold`](InventoryStore::try_hold) does, for a
    /// booking about to be opened on the hold (a checkout's). A store that
    /// keeps holds nobody has booked apart from booked ones (the in-memory
    /// store keeps them per thread) places this one with the bookings; the
    /// default is `try_hold`.
    async fn try_hold_to_book(&self, request: &HoldRequest) -> Result<Hold> {
        self.try_hold(request).await
    }
    /// Reserves for `requests` (all of one event) in their order: the result at
    /// position `i` is exactly what `try_hold(&requests[i])` would return right
    /// after the requests before it. A store overrides this to take the event's
    /// counters once for the whole batch (one transaction, one conditional
    /// update); the default holds them one by one.
    async fn try_hold_batch(&self, requests: &[HoldRequest]) -> Vec<Result<Hold>> {
        super::combiner::sequential(self, requests).await
    }
    /// Whether [`HoldBatching::Auto`](super::HoldBatching::Auto) should batch
    /// holds on this store (true where a hold costs a round trip to a server).
    fn prefers_hold_batching(&self) -> bool {
        false
    }
    /// Reads a hold.
    async fn hold(&self, id: HoldId) -> Result<Option<Hold>>;
    /// Whose hold `id` is and of which event (`None` if there is no such
    /// hold): what authorizing an action on it needs, without its lines and
    /// quote. The default reads the whole hold; a store overrides it to read
    /// less.
    async fn hold_owner(&self, id: HoldId) -> Result<Option<HoldOwner>> {
        Ok(self.hold(id).await?.as_ref().map(HoldOwner::of))
    }
    /// Gives a hold up.
    async fn release_hold(&self, id: HoldId, now: DateTime<Utc>) -> Result<Hold>;
    /// Gives hold `id` up if `customer` holds it, as [`release_hold`]
    /// would; a hold of another customer is `NotFound`, exactly as if it
    /// were not there, and stays as it is. A customer giving up their own
    /// hold is the common case: a store overrides this to check and release
    /// in one step. The default reads the owner, then releases (a hold's
    /// customer never changes, so nothing can come between).
    ///
    /// [`release_hold`]: InventoryStore::release_hold
    async fn release_customer_hold(
        &self,
        id: HoldId,
        customer: UserId,
        now: DateTime<Utc>,
    ) -> Result<Hold> {
        match self.hold_owner(id).await? {
            Some(owner) if owner.customer == customer => self.release_hold(id, now).await,
            _ => Err(crate::Error::not_found("hold", id)),
        }
    }
    /// Gives holds up in their order: the result at position `i` is what
    /// `release_hold(requests[i].hold_id, requests[i].now)` would return right
    /// after the requests before it. A store overrides this to return a batch's
    /// units to each event's counters once; the default releases one by one.
    async fn release_hold_batch(&self, requests: &[HoldRelease]) -> Vec<Result<Hold>> {
        let mut out = Vec::with_capacity(requests.len());
        for r in requests {
            out.push(self.release_hold(r.hold_id, r.now).await);
        }
        out
    }
    /// Expires lapsed holds.
    async fn sweep_expired(&self, now: DateTime<Utc>, limit: u32) -> Result<u32>;
    /// Forgets ended holds that no booking refers to.
    async fn purge_ended_holds(&self, created_before: DateTime<Utc>, limit: u32) -> Result<u32>;
}
