//! Pure rules of holding units, shared by every backend: the store reads its rows
//! inside its atomic operation and asks these functions what to do.

use serde::{Deserialize, Serialize};

use super::{HoldLine, HoldRequest, TicketTier};
use crate::event::Event;
use crate::id::{QuotaId, TierId};
use crate::money::Money;
use crate::{Error, Result};

/// Names a quota of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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

/// What a valid hold request needs: priced lines and the units per quota.
#[derive(Debug, Clone, PartialEq)]
pub struct HoldPlan {
    /// Lines with the unit price locked now.
    pub lines: Vec<HoldLine>,
    /// Sum of the lines.
    pub total: Money,
    /// Units to take on each quota, sorted by quota (a fixed lock order for backends).
    pub demand: Demand,
}

/// Checks a hold request against the event and its tiers (status, ownership of
/// tiers, sales windows, per-order limits, currency) and works out what it takes
/// from each quota. Capacity itself is the store's to check atomically.
pub fn plan_hold(event: &Event, tiers: &[TicketTier], request: &HoldRequest) -> Result<HoldPlan> {
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
    let mut lines = Vec::with_capacity(request.items.len());
    let mut demand = Demand::with_capacity(4);
    let mut total = Money::zero(event.currency);
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
        let line = HoldLine {
            tier_id: tier.id,
            quantity: item.quantity,
            unit_price: tier.price,
        };
        total = total.checked_add(line.unit_price.times(line.quantity)?)?;
        lines.push(line);
        for key in quotas_of(tier) {
            add_demand(&mut demand, key, item.quantity);
        }
    }
    Ok(HoldPlan {
        lines,
        total,
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
