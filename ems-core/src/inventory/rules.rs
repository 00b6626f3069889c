//! Pure rules of holding units, shared by every backend: the store reads its rows
//! inside its atomic operation and asks these functions what to do.

use serde::{Deserialize, Serialize};

use super::{
    EventAvailability, Hold, HoldLine, HoldRequest, HoldStatus, QuotaAvailability, SharedQuota,
    TicketTier, TierAvailability,
};
use crate::event::Event;
use crate::id::{QuotaId, TierId};
use crate::money::Money;
use crate::pricing::{price_order, Coupon, OrderContext, OrderItem, Quote, UnitPosition};
use crate::{Error, Result};

/// Names a quota of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum QuotaKey {
    /// The event's total capacity.
    Event,
    /// A tier's own capacity.
    Tier(TierId),
    /// A shared quota.
    Shared(QuotaId),
}

impl std::fmt::Display for QuotaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QuotaKey::Event => f.write_str("event capacity"),
            QuotaKey::Tier(t) => write!(f, "tier {t}"),
            QuotaKey::Shared(q) => write!(f, "shared quota {q}"),
        }
    }
}

/// Units per quota, sorted by [`QuotaKey`], each quota once.
pub type Demand = Vec<(QuotaKey, u32)>;

fn add_demand(demand: &mut Demand, key: QuotaKey, units: u32) {
    match demand.binary_search_by(|(k, _)| k.cmp(&key)) {
        Ok(i) => demand[i].1 += units,
        Err(i) => demand.insert(i, (key, units)),
    }
}

/// Adds `more` to `demand`, which stays sorted with each quota once: the
/// demand of a batch of holds is the sum of its granted requests'.
pub fn merge_demand(demand: &mut Demand, more: &[(QuotaKey, u32)]) {
    for &(key, units) in more {
        add_demand(demand, key, units);
    }
}

/// What a valid hold request needs: priced lines and the units per quota.
#[derive(Debug, Clone, PartialEq)]
pub struct HoldPlan {
    /// Lines with the unit price locked now (one per tier and price).
    pub lines: Vec<HoldLine>,
    /// The full quote: surge per unit, fees and tax.
    pub quote: Quote,
    /// `quote.total`.
    pub total: Money,
    /// Units to take on each quota, sorted by quota (a fixed lock order for backends).
    pub demand: Demand,
}

/// Whether [`plan_hold`] gives `request` the same prices whatever the store
/// counts as taken or recently sold: it names no coupon, and every tier it
/// names (all of them in `tiers`) prices by time alone (no rule of its
/// [`SurgePolicy`](crate::pricing::SurgePolicy) reads sales).
///
/// Such a request can be planned before the store's atomic operation, with
/// nothing counted as taken; inside it, [`HoldPlan::shift_positions`] moves
/// the plan's lines to the positions the store counts, which gives exactly
/// the plan `plan_hold` would have made there (the store still checks that
/// the event and tiers are the ones planned with, and the capacity).
pub fn plan_ignores_sales(tiers: &[TicketTier], request: &HoldRequest) -> bool {
    request.coupon.is_none()
        && request.items.iter().all(|item| {
            tiers
                .iter()
                .find(|t| t.id == item.tier_id)
                .is_some_and(|t| !t.pricing.reads_sales())
        })
}

impl HoldPlan {
    /// The active hold this plan makes for `request` (of an event of
    /// `organization`, holding a use of `coupon`), and the units it takes.
    pub fn into_hold(
        self,
        request: &HoldRequest,
        organization: crate::id::OrganizationId,
        coupon: Option<crate::id::CouponId>,
    ) -> (Hold, Demand) {
        let hold = Hold {
            id: request.id,
            event_id: request.event_id,
            organization,
            customer: request.customer,
            lines: self.lines,
            quote: self.quote,
            total: self.total,
            status: HoldStatus::Active,
            booking_id: None,
            coupon,
            created_at: request.now,
            expires_at: request.expires_at,
        };
        (hold, self.demand)
    }

    /// Moves a plan made with nothing taken to the positions `taken(quota)`
    /// counts: each quote line's first position grows by its tier's taken
    /// units. For a request [`plan_ignores_sales`] accepts, the result equals
    /// the plan [`plan_hold`] makes with `taken`.
    pub fn shift_positions(&mut self, taken: impl Fn(QuotaKey) -> u32) {
        self.quote
            .shift_positions(|tier| taken(QuotaKey::Tier(tier)));
    }
}

impl Hold {
    /// The `HoldPlaced` domain event of this hold.
    pub fn placed_event(&self) -> crate::outbox::DomainEvent {
        crate::outbox::DomainEvent::HoldPlaced {
            event_id: self.event_id,
            hold_id: self.id,
            customer: self.customer,
            quantity: self.quantity(),
        }
    }
}

/// Checks a hold request against the event and its tiers (status, ownership of
/// tiers, sales windows, per-order limits, currency) and works out what it takes
/// from each quota. Capacity itself is the store's to check atomically.
///
/// Units are priced by their position: `taken(quota)` is what the store counts as
/// taken on each quota right now (inside its atomic operation) and `recent(tier)`
/// the tier's units held within each of its velocity windows. `coupon` is the
/// coupon the request names, already resolved by the store (its use counts are
/// the store's to check; its window, scope and minimum quantity are checked here).
pub fn plan_hold(
    event: &Event,
    tiers: &[TicketTier],
    request: &HoldRequest,
    taken: &dyn Fn(QuotaKey) -> u32,
    recent: &dyn Fn(TierId) -> [u32; 4],
    coupon: Option<&Coupon>,
) -> Result<HoldPlan> {
    if request.event_id != event.id {
        return Err(Error::invalid(
            "event_id",
            "hold request names another event",
        ));
    }
    if !event.status.is_on_sale() {
        return Err(Error::invalid_state(
            "event",
            event.id,
            event.status,
            "hold tickets of",
        ));
    }
    if request.now >= event.starts_at {
        return Err(Error::invalid_state(
            "event",
            event.id,
            "started",
            "hold tickets of",
        ));
    }
    if request.items.is_empty() {
        return Err(Error::invalid("items", "at least one tier and quantity"));
    }
    if request.expires_at <= request.now {
        return Err(Error::invalid("expires_at", "must be after now"));
    }
    let mut order = Vec::with_capacity(request.items.len());
    let mut demand = Demand::with_capacity(4);
    let mut event_taken = taken(QuotaKey::Event);
    for (i, item) in request.items.iter().enumerate() {
        if request.items[..i]
            .iter()
            .any(|other| other.tier_id == item.tier_id)
        {
            return Err(Error::invalid(
                "items",
                format!("tier {} listed twice", item.tier_id),
            ));
        }
        if item.quantity == 0 {
            return Err(Error::invalid(
                "items.quantity",
                "must be greater than zero",
            ));
        }
        let tier = tiers
            .iter()
            .find(|t| t.id == item.tier_id)
            .ok_or_else(|| Error::not_found("tier", item.tier_id))?;
        if tier.event_id != event.id {
            return Err(Error::invalid(
                "items.tier_id",
                format!("tier {} belongs to another event", tier.id),
            ));
        }
        if item.quantity < tier.min_per_order || item.quantity > tier.max_per_order {
            return Err(Error::invalid(
                "items.quantity",
                format!(
                    "{} of tier {:?}: allowed per order is {}..={}",
                    item.quantity, tier.name, tier.min_per_order, tier.max_per_order
                ),
            ));
        }
        if tier.sales_start.is_some_and(|s| request.now < s) {
            return Err(Error::invalid_state(
                "tier",
                tier.id,
                "sales not open yet",
                "hold",
            ));
        }
        if tier.sales_end.is_some_and(|e| request.now >= e) {
            return Err(Error::invalid_state(
                "tier",
                tier.id,
                "sales closed",
                "hold",
            ));
        }
        if tier.price.currency() != event.currency {
            return Err(Error::invalid(
                "price.currency",
                format!("tier {} is not priced in {}", tier.id, event.currency),
            ));
        }
        let first = UnitPosition {
            tier_sold_before: taken(QuotaKey::Tier(tier.id)),
            tier_capacity: tier.capacity,
            event_sold_before: event_taken,
            event_capacity: event.capacity,
            sold_in_windows: recent(tier.id),
            at: request.now,
            starts_at: event.starts_at,
        };
        // Later items of the same order come after this one in the event's sequence.
        event_taken = event_taken.saturating_add(item.quantity);
        order.push(OrderItem {
            tier_id: tier.id,
            base: tier.price,
            policy: &tier.pricing,
            quantity: item.quantity,
            first,
        });
        for key in quotas_of(tier) {
            add_demand(&mut demand, key, item.quantity);
        }
    }
    let ctx = OrderContext {
        event_id: event.id,
        organization: event.organization,
        now: request.now,
        currency: event.currency,
    };
    let quote = price_order(&ctx, &order, coupon, &event.fees, event.tax.as_ref())?;
    let lines = quote
        .lines
        .iter()
        .map(|l| HoldLine {
            tier_id: l.tier_id,
            quantity: l.quantity,
            unit_price: l.unit_price,
        })
        .collect();
    Ok(HoldPlan {
        lines,
        total: quote.total,
        quote,
        demand,
    })
}

/// Every quota a tier draws on.
pub(crate) fn quotas_of(tier: &TicketTier) -> impl Iterator<Item = QuotaKey> + '_ {
    [QuotaKey::Event, QuotaKey::Tier(tier.id)]
        .into_iter()
        .chain(tier.shared_quotas.iter().map(|q| QuotaKey::Shared(*q)))
}

/// Units each quota gets back (or must take again) for `lines`.
pub fn demand_of(tiers: &[TicketTier], lines: &[HoldLine]) -> Demand {
    let mut demand = Demand::with_capacity(4);
    for line in lines {
        if let Some(tier) = tiers.iter().find(|t| t.id == line.tier_id) {
            for key in quotas_of(tier) {
                add_demand(&mut demand, key, line.quantity);
            }
        } else {
            // A tier is never deleted while units of it are held; count the
            // event-wide quota at least so nothing leaks.
            add_demand(&mut demand, QuotaKey::Event, line.quantity);
            add_demand(&mut demand, QuotaKey::Tier(line.tier_id), line.quantity);
        }
    }
    demand
}

/// The `SoldOut` error for the first quota in `demand` that cannot take its units,
/// given `available(key)`; `Ok` if all fit.
pub fn check_capacity(
    demand: &[(QuotaKey, u32)],
    available: impl Fn(QuotaKey) -> u32,
) -> Result<()> {
    for (key, wanted) in demand {
        let left = available(*key);
        if *wanted > left {
            return Err(Error::SoldOut {
                quota: key.to_string(),
                requested: *wanted,
                available: left,
            });
        }
    }
    Ok(())
}

/// The capacity of quota `key` of `event`, given its tiers and shared quotas
/// (0 for a quota the event does not have).
pub fn quota_capacity(
    event: &Event,
    tiers: &[TicketTier],
    shared: &[SharedQuota],
    key: QuotaKey,
) -> u32 {
    match key {
        QuotaKey::Event => event.capacity,
        QuotaKey::Tier(id) => tiers.iter().find(|t| t.id == id).map_or(0, |t| t.capacity),
        QuotaKey::Shared(id) => shared.iter().find(|q| q.id == id).map_or(0, |q| q.capacity),
    }
}

/// An event's availability from what a store counts: `taken(quota)` and, per tier,
/// the units held within each of its velocity windows (`recent`).
pub fn availability_of(
    event: &Event,
    tiers: &[TicketTier],
    shared: &[SharedQuota],
    taken: &dyn Fn(QuotaKey) -> u32,
    recent: &dyn Fn(TierId) -> [u32; 4],
) -> EventAvailability {
    let capacity = |k| quota_capacity(event, tiers, shared, k);
    let available = |k| capacity(k).saturating_sub(taken(k));
    let mut keys = vec![QuotaKey::Event];
    keys.extend(tiers.iter().map(|t| QuotaKey::Tier(t.id)));
    keys.extend(shared.iter().map(|q| QuotaKey::Shared(q.id)));
    let quotas = keys
        .into_iter()
        .map(|k| QuotaAvailability {
            quota: k,
            capacity: capacity(k),
            taken: taken(k),
        })
        .collect();
    let tiers = tiers
        .iter()
        .map(|t| {
            let mut keys = vec![QuotaKey::Event, QuotaKey::Tier(t.id)];
            keys.extend(t.shared_quotas.iter().map(|q| QuotaKey::Shared(*q)));
            TierAvailability {
                tier_id: t.id,
                available: keys.iter().map(|k| available(*k)).min().unwrap_or(0),
                taken: taken(QuotaKey::Tier(t.id)),
                capacity: t.capacity,
                recent: recent(t.id),
            }
        })
        .collect();
    EventAvailability {
        event_id: event.id,
        quotas,
        tiers,
    }
}

fn tier_name_taken(tier: &TicketTier) -> Error {
    Error::already_exists("tier", "name", &tier.name)
}

/// Checks a new tier against its event as stored: the event is not cancelled or
/// completed, no other tier has its name (case-insensitive), and every shared
/// quota it draws on belongs to the event.
pub fn check_new_tier(
    event: &Event,
    tiers: &[TicketTier],
    shared: &[SharedQuota],
    tier: &TicketTier,
) -> Result<()> {
    if event.status.is_final() {
        return Err(Error::invalid_state(
            "event",
            tier.event_id,
            event.status,
            "add tier to",
        ));
    }
    if tiers
        .iter()
        .any(|t| t.name.eq_ignore_ascii_case(&tier.name))
    {
        return Err(tier_name_taken(tier));
    }
    if let Some(q) = tier
        .shared_quotas
        .iter()
        .find(|q| !shared.iter().any(|sq| sq.id == **q))
    {
        return Err(Error::not_found("shared quota", q));
    }
    Ok(())
}

/// Checks a changed tier against the stored tiers and the units `taken` on it:
/// its version follows the stored one, its capacity holds what is taken, its
/// shared quotas belong to the event and change only while nothing is taken,
/// and its name stays unique.
pub fn check_tier_change(
    tiers: &[TicketTier],
    shared: &[SharedQuota],
    tier: &TicketTier,
    taken: u32,
) -> Result<()> {
    let current = tiers
        .iter()
        .find(|t| t.id == tier.id)
        .ok_or_else(|| Error::not_found("tier", tier.id))?;
    if current.version + 1 != tier.version {
        return Err(Error::Conflict {
            entity: "tier",
            id: tier.id.to_string(),
            expected: tier.version.saturating_sub(1),
            found: current.version,
        });
    }
    if tier.capacity < taken {
        return Err(Error::invalid(
            "capacity",
            format!("{taken} units are already taken"),
        ));
    }
    if !tier
        .shared_quotas
        .iter()
        .all(|q| shared.iter().any(|sq| sq.id == *q))
    {
        return Err(Error::invalid(
            "shared_quotas",
            "every shared quota must belong to the event",
        ));
    }
    if tiers
        .iter()
        .any(|t| t.id != tier.id && t.name.eq_ignore_ascii_case(&tier.name))
    {
        return Err(tier_name_taken(tier));
    }
    if current.shared_quotas != tier.shared_quotas && taken > 0 {
        return Err(Error::invalid(
            "shared_quotas",
            "cannot change while units of the tier are held or sold",
        ));
    }
    Ok(())
}

/// The domain events of ending `holds` (now `status`: expired or released) and
/// of moving their pending bookings to `outcome`: `HoldExpired` or
/// `HoldReleased` for each hold, then `BookingExpired` or `BookingFailed` for
/// its booking if `moved` says the booking changed. Every store records these
/// with the change.
pub fn hold_end_events(
    holds: &[Hold],
    status: HoldStatus,
    outcome: Option<&(crate::booking::BookingStatus, crate::booking::BookingReason)>,
    moved: impl Fn(crate::id::BookingId) -> bool,
) -> Vec<crate::outbox::DomainEvent> {
    use crate::booking::BookingStatus;
    use crate::outbox::DomainEvent;
    let mut out = Vec::with_capacity(holds.len() * 2);
    for h in holds {
        let (event_id, hold_id, quantity) = (h.event_id, h.id, h.quantity());
        out.push(match status {
            HoldStatus::Expired => DomainEvent::HoldExpired {
                event_id,
                hold_id,
                quantity,
            },
            _ => DomainEvent::HoldReleased {
                event_id,
                hold_id,
                quantity,
            },
        });
        if let (Some(b), Some((bstatus, reason))) = (h.booking_id, outcome) {
            if moved(b) {
                out.push(match bstatus {
                    BookingStatus::Expired => DomainEvent::BookingExpired {
                        event_id,
                        booking_id: b,
                    },
                    _ => DomainEvent::BookingFailed {
                        event_id,
                        booking_id: b,
                        reason: reason.clone(),
                    },
                });
            }
        }
    }
    out
}

/// Units of each tier held within each of its velocity windows, as a backend
/// tallies them from its log of recent sales (the `recent` of [`plan_hold`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecentSales(Vec<(TierId, [u32; 4])>);

/// What a backend must read of its sales log for the velocity rules of
/// `tiers`: the tiers that have such rules and how far back before the instant
/// of the hold their longest window reaches. `None` when no tier has one (the
/// log need not be read at all).
pub fn velocity_lookback(tiers: &[TicketTier]) -> Option<(Vec<TierId>, chrono::Duration)> {
    let ids: Vec<TierId> = tiers
        .iter()
        .filter(|t| t.pricing.velocity_windows().next().is_some())
        .map(|t| t.id)
        .collect();
    let longest = tiers
        .iter()
        .filter_map(|t| t.pricing.velocity_windows().max())
        .max()?;
    Some((ids, longest))
}

impl RecentSales {
    /// Sums `sales` — (tier, when, units), in any order — into each of
    /// `tiers`' velocity windows ending at `now`: a sale counts in a window
    /// when it is later than the window's start.
    pub fn tally(
        tiers: &[TicketTier],
        sales: &[(TierId, chrono::DateTime<chrono::Utc>, u32)],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        Self(
            tiers
                .iter()
                .filter(|t| t.pricing.velocity_windows().next().is_some())
                .map(|t| {
                    let mut out = [0u32; 4];
                    for (slot, window) in out.iter_mut().zip(t.pricing.velocity_windows()) {
                        let since = now - window;
                        *slot = sales
                            .iter()
                            .filter(|(id, at, _)| *id == t.id && *at > since)
                            .map(|(_, _, n)| *n)
                            .fold(0u32, u32::saturating_add);
                    }
                    (t.id, out)
                })
                .collect(),
        )
    }

    /// Units of `tier` within each of its velocity windows (zeros for a tier
    /// without velocity rules).
    pub fn of(&self, tier: TierId) -> [u32; 4] {
        self.0
            .iter()
            .find(|(t, _)| *t == tier)
            .map_or([0; 4], |(_, r)| *r)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone, Utc};

    use super::*;
    use crate::id::EventId;
    use crate::pricing::{Effect, SurgePolicy, SurgeRule, Trigger};

    fn tier(windows: &[i64]) -> TicketTier {
        TicketTier {
            id: TierId::new(),
            event_id: EventId::new(),
            name: "Standing".into(),
            price: Money::parse("20", "EUR").expect("valid price"),
            capacity: 100,
            min_per_order: 1,
            max_per_order: 10,
            sales_start: None,
            sales_end: None,
            shared_quotas: Vec::new(),
            pricing: SurgePolicy {
                rules: windows
                    .iter()
                    .map(|m| SurgeRule {
                        trigger: Trigger::Velocity {
                            units: 5,
                            window: Duration::minutes(*m),
                        },
                        effect: Effect::Multiply(rust_decimal::Decimal::TWO),
                    })
                    .collect(),
                ..Default::default()
            },
            version: 1,
        }
    }

    /// The tests' "now".
    fn evening() -> chrono::DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, 20, 0, 0)
            .single()
            .expect("valid")
    }

    #[test]
    fn recent_sales_count_each_window_of_each_tier_from_its_start() {
        let now = evening();
        let (fast, slow, plain) = (tier(&[10, 60]), tier(&[30]), tier(&[]));
        let tiers = [fast.clone(), slow.clone(), plain.clone()];
        let ago = |m| now - Duration::minutes(m);
        let sales = [
            (fast.id, ago(5), 2),
            (fast.id, ago(10), 7), // at the 10-minute window's start: outside it
            (fast.id, ago(59), 3),
            (fast.id, ago(61), 100),
            (slow.id, ago(29), 4),
            (plain.id, ago(1), 9),
        ];
        let recent = RecentSales::tally(&tiers, &sales, now);
        assert_eq!(recent.of(fast.id), [2, 12, 0, 0]);
        assert_eq!(recent.of(slow.id), [4, 0, 0, 0]);
        assert_eq!(
            recent.of(plain.id),
            [0; 4],
            "a tier without velocity rules counts nothing"
        );
        assert_eq!(
            velocity_lookback(&tiers),
            Some((vec![fast.id, slow.id], Duration::minutes(60)))
        );
        assert_eq!(velocity_lookback(&[plain]), None);
    }
    fn on_sale_event(now: chrono::DateTime<Utc>, capacity: u32) -> Event {
        Event {
            id: EventId::new(),
            organization: crate::id::OrganizationId::new(),
            title: "Concert".into(),
            description: String::new(),
            category: String::new(),
            venue: crate::event::VenueInfo {
                name: "Hall".into(),
                city: "Lyon".into(),
                address: None,
            },
            time_zone: chrono_tz::UTC,
            starts_at: now + Duration::days(10),
            ends_at: now + Duration::days(11),
            capacity,
            currency: crate::money::Currency::EUR,
            refund_policy: crate::booking::RefundPolicy::none(),
            fees: crate::pricing::Fees {
                per_ticket: Some(Money::parse("1.50", "EUR").expect("valid fee")),
                per_order: None,
            },
            tax: None,
            status: crate::event::EventStatus::Published,
            rescheduled_from: None,
            version: 2,
            created_at: now,
            updated_at: now,
        }
    }

    fn request(event: &Event, items: &[(TierId, u32)], now: chrono::DateTime<Utc>) -> HoldRequest {
        HoldRequest {
            id: crate::id::HoldId::new(),
            event_id: event.id,
            customer: crate::id::UserId::new(),
            items: items
                .iter()
                .map(|&(tier_id, quantity)| super::super::HoldItem { tier_id, quantity })
                .collect(),
            now,
            expires_at: now + Duration::minutes(10),
            coupon: None,
        }
    }

    /// A tier of `event` priced by time only: dearer in the last `days` days.
    fn timed_tier(event: &Event, days: i64) -> TicketTier {
        let mut t = tier(&[]);
        t.event_id = event.id;
        t.capacity = 1_000;
        t.pricing.rules.push(SurgeRule {
            trigger: Trigger::TimeToStart {
                min_before: None,
                max_before: Some(Duration::days(days)),
            },
            effect: Effect::Multiply(rust_decimal::Decimal::new(15, 1)),
        });
        t
    }

    proptest::proptest! {
        #[test]
        fn a_time_priced_plan_made_with_nothing_taken_shifts_to_the_counted_positions(
            days in 1i64..20,
            taken_a in 0u32..900,
            taken_b in 0u32..900,
            qa in 1u32..=10,
            qb in 0u32..=10,
        ) {
            let now = evening();
            let event = on_sale_event(now, 5_000);
            let (a, b) = (timed_tier(&event, days), timed_tier(&event, 30));
            let mut items = vec![(a.id, qa)];
            if qb > 0 {
                items.push((b.id, qb));
            }
            let request = request(&event, &items, now);
            let tiers = [a.clone(), b.clone()];
            proptest::prop_assert!(plan_ignores_sales(&tiers, &request));
            let taken = |k| match k {
                QuotaKey::Tier(t) if t == a.id => taken_a,
                QuotaKey::Tier(t) if t == b.id => taken_b,
                QuotaKey::Event => taken_a + taken_b,
                _ => 0,
            };
            let counted = plan_hold(&event, &tiers, &request, &taken, &|_| [0; 4], None)
                .expect("a valid request");
            let mut early = plan_hold(&event, &tiers, &request, &|_| 0, &|_| [0; 4], None)
                .expect("a valid request");
            early.shift_positions(taken);
            proptest::prop_assert_eq!(early, counted);
        }
    }

    #[test]
    fn a_plan_that_reads_sales_or_a_coupon_is_not_made_early() {
        let now = evening();
        let event = on_sale_event(now, 5_000);
        let timed = timed_tier(&event, 5);
        let mut scarce = timed_tier(&event, 5);
        scarce.pricing.rules.push(SurgeRule::below_remaining(
            10,
            Money::parse("99", "EUR").expect("valid price"),
        ));
        let mut recent = tier(&[30]);
        recent.event_id = event.id;
        let tiers = [timed.clone(), scarce.clone(), recent.clone()];
        assert!(plan_ignores_sales(
            &tiers,
            &request(&event, &[(timed.id, 2)], now)
        ));
        assert!(!plan_ignores_sales(
            &tiers,
            &request(&event, &[(timed.id, 2), (scarce.id, 1)], now)
        ));
        assert!(!plan_ignores_sales(
            &tiers,
            &request(&event, &[(recent.id, 1)], now)
        ));
        let mut with_coupon = request(&event, &[(timed.id, 2)], now);
        with_coupon.coupon = Some("SPRING".into());
        assert!(!plan_ignores_sales(&tiers, &with_coupon));
        assert!(
            !plan_ignores_sales(&tiers, &request(&event, &[(TierId::new(), 1)], now)),
            "a tier the event does not have"
        );
        // Why it matters: near the end the scarce tier's price depends on
        // what is taken, which a plan made with nothing taken cannot know.
        let request = request(&event, &[(scarce.id, 1)], now);
        let near_end = |k| {
            if k == QuotaKey::Tier(scarce.id) {
                995
            } else {
                0
            }
        };
        let counted = plan_hold(&event, &tiers, &request, &near_end, &|_| [0; 4], None)
            .expect("a valid request");
        let mut early = plan_hold(&event, &tiers, &request, &|_| 0, &|_| [0; 4], None)
            .expect("a valid request");
        early.shift_positions(near_end);
        assert_ne!(early.total, counted.total);
    }
}
