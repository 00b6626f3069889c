use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::money::{Money, Rounding};
use crate::{Error, Result};

/// Most rules a policy may have.
pub const MAX_RULES: usize = 64;

/// Which counter a sell-through trigger reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The tier's own sales and capacity.
    Tier,
    /// The whole event's.
    Event,
}

/// When a rule applies to a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "when", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Trigger {
    /// At least this share (0..=1) of the capacity is sold before the unit.
    SoldRatioAtLeast {
        /// Counter read.
        scope: Scope,
        /// Share sold, 0..=1.
        ratio: Decimal,
    },
    /// At most this many units remain, counting the unit itself.
    RemainingAtMost {
        /// Counter read.
        scope: Scope,
        /// Units left.
        units: u32,
    },
    /// The event starts in `min_before` or more and less than `max_before` (either
    /// bound open when `None`): early-bird is `min_before`, last-minute `max_before`.
    TimeToStart {
        /// Lower bound (inclusive).
        min_before: Option<Duration>,
        /// Upper bound (exclusive).
        max_before: Option<Duration>,
    },
    /// At least `units` of the tier sold within the trailing `window`, counting the
    /// units of this order before the unit.
    Velocity {
        /// Units sold.
        units: u32,
        /// Trailing window.
        window: Duration,
    },
}

/// What a matching rule does to the running price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "op", content = "value", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Effect {
    /// Replace the price.
    Set(Money),
    /// Add (or, negative, subtract) an amount.
    Add(Money),
    /// Multiply by a factor (> 0).
    Multiply(Decimal),
}

/// One rule: when `trigger` holds, apply `effect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SurgeRule {
    /// When.
    pub trigger: Trigger,
    /// What.
    pub effect: Effect,
}

impl SurgeRule {
    /// The one-line threshold rule: with `units` or fewer left in the tier, the price is `price`.
    pub fn below_remaining(units: u32, price: Money) -> Self {
        Self {
            trigger: Trigger::RemainingAtMost {
                scope: Scope::Tier,
                units,
            },
            effect: Effect::Set(price),
        }
    }
}

/// A tier's dynamic pricing: ordered rules, bounds and rounding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SurgePolicy {
    /// Rules, applied in this order to every unit they match.
    pub rules: Vec<SurgeRule>,
    /// No unit costs less.
    pub floor: Option<Money>,
    /// No unit costs more.
    pub ceiling: Option<Money>,
    /// How unit prices are rounded to the minor unit.
    pub rounding: Rounding,
}

impl Default for SurgePolicy {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            floor: None,
            ceiling: None,
            rounding: Rounding::HalfUp,
        }
    }
}

/// Where a unit stands in the sell sequence, and when it is sold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnitPosition {
    /// Units of the tier sold before this one.
    pub tier_sold_before: u32,
    /// The tier's capacity.
    pub tier_capacity: u32,
    /// Units of the event sold before this one.
    pub event_sold_before: u32,
    /// The event's capacity.
    pub event_capacity: u32,
    /// Units of the tier sold within each velocity rule's window before this one,
    /// in the order of [`SurgePolicy::velocity_windows`].
    pub sold_in_windows: [u32; 4],
    /// When it is sold.
    pub at: DateTime<Utc>,
    /// When the event starts.
    pub starts_at: DateTime<Utc>,
}

impl UnitPosition {
    /// The position of the next unit after this one, sold at the same moment.
    pub fn next(&self) -> Self {
        let mut windows = self.sold_in_windows;
        for w in &mut windows {
            *w = w.saturating_add(1);
        }
        Self {
            tier_sold_before: self.tier_sold_before.saturating_add(1),
            event_sold_before: self.event_sold_before.saturating_add(1),
            sold_in_windows: windows,
            ..*self
        }
    }
}

fn interval(t: &Trigger) -> Option<(i64, i64)> {
    match t {
        Trigger::TimeToStart {
            min_before,
            max_before,
        } => Some((
            min_before.map_or(i64::MIN, |d| d.num_seconds()),
            max_before.map_or(i64::MAX, |d| d.num_seconds()),
        )),
        _ => None,
    }
}

impl SurgePolicy {
    /// Checks the policy against its tier's base price: bounds in order and in the
    /// base currency, factors positive, ratios in 0..=1, windows positive, at most
    /// four velocity windows, and no two time windows that overlap with different effects.
    pub fn validate(&self, base: Money) -> Result<()> {
        let currency = base.currency();
        let same = |field: &'static str, m: &Money| {
            if m.currency() == currency {
                Ok(())
            } else {
                Err(Error::invalid(
                    field,
                    format!("{} is not in the tier's currency {currency}", m),
                ))
            }
        };
        if let Some(f) = &self.floor {
            same("pricing.floor", f)?;
        }
        if let Some(c) = &self.ceiling {
            same("pricing.ceiling", c)?;
        }
        if let (Some(f), Some(c)) = (&self.floor, &self.ceiling) {
            if f.amount() > c.amount() {
                return Err(Error::invalid(
                    "pricing.floor",
                    format!("floor {f} is above ceiling {c}"),
                ));
            }
        }
        let mut windows = 0;
        for (i, rule) in self.rules.iter().enumerate() {
            match &rule.effect {
                Effect::Set(m) | Effect::Add(m) => same("pricing.rules.effect", m)?,
                Effect::Multiply(f) if *f <= Decimal::ZERO => {
                    return Err(Error::invalid(
                        "pricing.rules.effect",
                        format!("rule {i}: factor {f} must be above zero"),
                    ));
                }
                Effect::Multiply(_) => {}
            }
            match &rule.trigger {
                Trigger::SoldRatioAtLeast { ratio, .. }
                    if *ratio < Decimal::ZERO || *ratio > Decimal::ONE =>
                {
                    return Err(Error::invalid(
                        "pricing.rules.trigger",
                        format!("rule {i}: ratio {ratio} is outside 0..=1"),
                    ));
                }
                Trigger::Velocity { window, .. } => {
                    if *window <= Duration::zero() {
                        return Err(Error::invalid(
                            "pricing.rules.trigger",
                            format!("rule {i}: window must be positive"),
                        ));
                    }
                    windows += 1;
                }
                Trigger::TimeToStart {
                    min_before,
                    max_before,
                } => {
                    if let (Some(a), Some(b)) = (min_before, max_before) {
                        if a >= b {
                            return Err(Error::invalid(
                                "pricing.rules.trigger",
                                format!("rule {i}: empty time window"),
                            ));
                        }
                    }
                }
                _ => {}
            }
            if let Some((a0, a1)) = interval(&rule.trigger) {
                for (j, other) in self.rules[..i].iter().enumerate() {
                    if let Some((b0, b1)) = interval(&other.trigger) {
                        if a0 < b1 && b0 < a1 && other.effect != rule.effect {
                            return Err(Error::invalid(
                                "pricing.rules.trigger",
                                format!("rules {j} and {i}: overlapping time windows with different effects"),
                            ));
                        }
                    }
                }
            }
        }
        if windows > 4 {
            return Err(Error::invalid(
                "pricing.rules",
                "at most four velocity rules",
            ));
        }
        if self.rules.len() > MAX_RULES {
            return Err(Error::invalid(
                "pricing.rules",
                format!("at most {MAX_RULES} rules"),
            ));
        }
        Ok(())
    }

    /// Whether any rule reads what is sold (a sell-through ratio, the units
    /// remaining, recent sales): without such rules a unit's price depends on
    /// when it is sold, never on how many were sold before it.
    pub fn reads_sales(&self) -> bool {
        self.rules
            .iter()
            .any(|r| !matches!(r.trigger, Trigger::TimeToStart { .. }))
    }

    /// The windows of the velocity rules, in rule order (what
    /// [`UnitPosition::sold_in_windows`] counts).
    pub fn velocity_windows(&self) -> impl Iterator<Item = Duration> + '_ {
        self.rules.iter().filter_map(|r| match r.trigger {
            Trigger::Velocity { window, .. } => Some(window),
            _ => None,
        })
    }

    /// The price of one unit at `pos`, and a bit per rule that applied (rule i → bit i).
    pub fn unit_price(&self, base: Money, pos: &UnitPosition) -> Result<(Money, u64)> {
        let prepared = self.prepare(pos);
        let mask = prepared.mask(pos);
        Ok((self.price_for(base, mask)?, mask))
    }

    /// Turns every trigger into an integer test for units sold at `pos.at`: time
    /// windows are decided once, ratios become unit thresholds.
    pub(crate) fn prepare(&self, pos: &UnitPosition) -> Prepared {
        let before = pos.starts_at - pos.at;
        let mut velocity_index = 0usize;
        let checks = self
            .rules
            .iter()
            .map(|rule| match rule.trigger {
                Trigger::SoldRatioAtLeast { scope, ratio } => {
                    let cap = counters(scope, pos).1;
                    if cap == 0 {
                        Check::Never
                    } else {
                        let threshold = (ratio * Decimal::from(cap)).ceil();
                        Check::SoldAtLeast(scope, u32::try_from(threshold).unwrap_or(u32::MAX))
                    }
                }
                Trigger::RemainingAtMost { scope, units } => Check::RemainingAtMost(scope, units),
                Trigger::TimeToStart {
                    min_before,
                    max_before,
                } => {
                    let inside = min_before.is_none_or(|m| before >= m)
                        && max_before.is_none_or(|m| before < m);
                    if inside {
                        Check::Always
                    } else {
                        Check::Never
                    }
                }
                Trigger::Velocity { units, .. } => {
                    let i = velocity_index;
                    velocity_index += 1;
                    Check::Velocity(i, units)
                }
            })
            .collect();
        Prepared { checks }
    }

    /// The unit price when exactly the rules in `mask` match.
    pub(crate) fn price_for(&self, base: Money, mask: u64) -> Result<Money> {
        let mut price = base.amount();
        for (i, rule) in self.rules.iter().enumerate() {
            if mask & (1 << i) == 0 {
                continue;
            }
            price = match rule.effect {
                Effect::Set(m) => m.amount(),
                Effect::Add(m) => price
                    .checked_add(m.amount())
                    .ok_or_else(|| Error::invalid("pricing", "price overflows"))?,
                Effect::Multiply(f) => price
                    .checked_mul(f)
                    .ok_or_else(|| Error::invalid("pricing", "price overflows"))?,
            };
        }
        if let Some(f) = self.floor {
            price = price.max(f.amount());
        }
        if let Some(c) = self.ceiling {
            price = price.min(c.amount());
        }
        let price = price.max(Decimal::ZERO);
        Ok(Money::new(price, base.currency()).round(self.rounding))
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Check {
    Always,
    Never,
    SoldAtLeast(Scope, u32),
    RemainingAtMost(Scope, u32),
    Velocity(usize, u32),
}

/// A policy's triggers as integer tests for one order item.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    checks: Vec<Check>,
}

impl Prepared {
    /// Which rules match the unit at `pos` (rule i → bit i).
    pub(crate) fn mask(&self, pos: &UnitPosition) -> u64 {
        let mut mask = 0u64;
        for (i, check) in self.checks.iter().enumerate() {
            let hit = match *check {
                Check::Always => true,
                Check::Never => false,
                Check::SoldAtLeast(scope, threshold) => counters(scope, pos).0 >= threshold,
                Check::RemainingAtMost(scope, units) => {
                    let (sold, cap) = counters(scope, pos);
                    cap.saturating_sub(sold) <= units
                }
                Check::Velocity(w, units) => pos
                    .sold_in_windows
                    .get(w)
                    .is_some_and(|sold| *sold >= units),
            };
            if hit {
                mask |= 1 << i;
            }
        }
        mask
    }
}

fn counters(scope: Scope, pos: &UnitPosition) -> (u32, u32) {
    match scope {
        Scope::Tier => (pos.tier_sold_before, pos.tier_capacity),
        Scope::Event => (pos.event_sold_before, pos.event_capacity),
    }
}
