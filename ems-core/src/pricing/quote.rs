use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::policy::{SurgePolicy, UnitPosition};
use crate::id::{CouponId, EventId, OrganizationId, TierId};
use crate::money::{Currency, Money, Rounding};
use crate::{Error, Result};

/// How much a coupon takes off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Discount {
    /// Percent off every unit it applies to (0..=100).
    Percent(Decimal),
    /// An amount off the order (never more than the lines it applies to).
    Fixed(Money),
}

/// What a coupon applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
#[non_exhaustive]
pub enum CouponScope {
    /// Every event of the coupon's organization.
    Organization,
    /// One event.
    Event(EventId),
    /// One tier (of `event`).
    Tier {
        /// The tier's event.
        event: EventId,
        /// The tier.
        tier: TierId,
    },
}

/// A promo code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Coupon {
    /// Its id.
    pub id: CouponId,
    /// What customers type (compared case-insensitively).
    pub code: String,
    /// The organization that issued it.
    pub organization: OrganizationId,
    /// What it applies to.
    pub scope: CouponScope,
    /// How much it takes off.
    pub discount: Discount,
    /// Valid from (inclusive).
    pub valid_from: Option<DateTime<Utc>>,
    /// Valid until (exclusive).
    pub valid_until: Option<DateTime<Utc>>,
    /// Fewest units (it applies to) an order must have.
    pub min_quantity: u32,
    /// Uses in total; `None` for unlimited (counted atomically by the store).
    pub max_uses: Option<u32>,
    /// Uses per customer; `None` for unlimited (counted atomically by the store).
    pub max_uses_per_customer: Option<u32>,
}

/// Service fees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Fees {
    /// On every ticket.
    pub per_ticket: Option<Money>,
    /// Once per order.
    pub per_order: Option<Money>,
}

impl Fees {
    /// Each fee must be a non-negative whole number of minor units in `currency`.
    pub fn validate(&self, currency: Currency) -> Result<()> {
        for m in [self.per_ticket, self.per_order].into_iter().flatten() {
            if m.currency() != currency || m.is_negative() || !m.is_minor_exact() {
                return Err(Error::invalid(
                    "fees",
                    format!("{m} must be a non-negative amount of whole minor units in {currency}"),
                ));
            }
        }
        Ok(())
    }
}

/// Whether a tax rate is in the price or on top of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TaxMode {
    /// Prices include the tax; the quote shows the included part.
    Inclusive,
    /// The tax is added to prices and fees.
    Exclusive,
}

/// A tax rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tax {
    /// Percent, 0..=100.
    pub rate: Decimal,
    /// In or on top.
    pub mode: TaxMode,
}

impl Tax {
    /// The rate must be within 0..=100 percent.
    pub fn validate(&self) -> Result<()> {
        if self.rate < Decimal::ZERO || self.rate > Decimal::ONE_HUNDRED {
            return Err(Error::invalid(
                "tax.rate",
                format!("{}% is outside 0..=100", self.rate),
            ));
        }
        Ok(())
    }
}

/// One tier of an order, with where its first unit falls in the sell sequence.
#[derive(Debug, Clone, Copy)]
pub struct OrderItem<'a> {
    /// The tier.
    pub tier_id: TierId,
    /// Its base price.
    pub base: Money,
    /// Its surge policy.
    pub policy: &'a SurgePolicy,
    /// Units.
    pub quantity: u32,
    /// Position of the first unit.
    pub first: UnitPosition,
}

/// Units of one tier that cost the same, with every step of their price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuoteLine {
    /// The tier.
    pub tier_id: TierId,
    /// Units in this line.
    pub quantity: u32,
    /// Position (units sold before) of the line's first unit.
    pub first_position: u32,
    /// The tier's base price.
    pub base_price: Money,
    /// Indexes of the surge rules that applied.
    pub rules_applied: Vec<u8>,
    /// Unit price after surge, floor, ceiling and rounding.
    pub unit_price: Money,
    /// Coupon discount on the whole line.
    pub discount: Money,
    /// Per-ticket fees on the whole line.
    pub fees: Money,
    /// Tax on the line (added when exclusive, included when inclusive).
    pub tax: Money,
    /// What the line costs: `unit_price × quantity − discount + fees (+ exclusive tax)`.
    pub total: Money,
}

/// A priced order and how its price came about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Quote {
    /// Currency of every amount.
    pub currency: Currency,
    /// Per unit group.
    pub lines: Vec<QuoteLine>,
    /// The coupon applied, if any.
    pub coupon: Option<CouponId>,
    /// The per-order fee.
    pub order_fee: Money,
    /// Tax on the per-order fee.
    pub order_fee_tax: Money,
    /// Tax included in (inclusive) or added to (exclusive) the total.
    pub tax_mode: Option<TaxMode>,
    /// Sum of the lines and the order fee with its tax.
    pub total: Money,
}

impl Quote {
    /// Units quoted.
    pub fn quantity(&self) -> u32 {
        self.lines.iter().map(|l| l.quantity).sum()
    }

    /// Moves every line's first position on by `sold_before(tier)`, the
    /// units of its tier sold before the order: a quote made as if nothing
    /// were sold becomes the one made at the real positions, when no rule
    /// of its tiers reads sales (see
    /// [`plan_ignores_sales`](crate::inventory::plan_ignores_sales)).
    pub fn shift_positions(&mut self, sold_before: impl Fn(TierId) -> u32) {
        for line in &mut self.lines {
            line.first_position = line
                .first_position
                .saturating_add(sold_before(line.tier_id));
        }
    }
}

fn percent_of(amount: Money, pct: Decimal, mode: Rounding) -> Result<Money> {
    amount.scale(pct / Decimal::ONE_HUNDRED, mode)
}

impl Coupon {
    /// Checks the coupon's own values.
    pub fn validate(&self, currency: Currency) -> Result<()> {
        if self.code.trim().is_empty() || self.code.len() > 64 {
            return Err(Error::invalid("coupon.code", "1..=64 characters"));
        }
        match self.discount {
            Discount::Percent(p) if p <= Decimal::ZERO || p > Decimal::ONE_HUNDRED => {
                return Err(Error::invalid(
                    "coupon.discount",
                    format!("{p}% is outside (0, 100]"),
                ));
            }
            Discount::Fixed(m) if m.currency() != currency => {
                return Err(Error::invalid(
                    "coupon.discount",
                    format!("{m} is not in {currency}"),
                ));
            }
            Discount::Fixed(m) if m.is_negative() || m.is_zero() || !m.is_minor_exact() => {
                return Err(Error::invalid(
                    "coupon.discount",
                    format!("{m} must be a positive whole number of minor units"),
                ));
            }
            _ => {}
        }
        if let (Some(a), Some(b)) = (self.valid_from, self.valid_until) {
            if b <= a {
                return Err(Error::invalid(
                    "coupon.valid_until",
                    "must be after valid_from",
                ));
            }
        }
        if self.max_uses == Some(0) || self.max_uses_per_customer == Some(0) {
            return Err(Error::invalid(
                "coupon.max_uses",
                "must be at least 1 when set",
            ));
        }
        Ok(())
    }

    fn applies_to(&self, organization: OrganizationId, event: EventId, tier: TierId) -> bool {
        organization == self.organization
            && match self.scope {
                CouponScope::Organization => true,
                CouponScope::Event(e) => e == event,
                CouponScope::Tier { event: e, tier: t } => e == event && t == tier,
            }
    }
}

/// Who issues the order, for coupon checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderContext {
    /// The event.
    pub event_id: EventId,
    /// Its organization.
    pub organization: OrganizationId,
    /// When the order is priced.
    pub now: DateTime<Utc>,
    /// Currency of the event.
    pub currency: Currency,
}

/// Prices an order: surge per unit, then coupon, fees and tax (see the module docs).
pub fn price_order(
    ctx: &OrderContext,
    items: &[OrderItem<'_>],
    coupon: Option<&Coupon>,
    fees: &Fees,
    tax: Option<&Tax>,
) -> Result<Quote> {
    let cur = ctx.currency;
    let zero = Money::zero(cur);
    fees.validate(cur)?;
    if let Some(t) = tax {
        t.validate()?;
    }
    // 1. Surge, unit by unit, grouped into lines of equal price (one per
    // item unless a rule changes the price within it).
    let mut lines: Vec<QuoteLine> = Vec::with_capacity(items.len());
    for item in items {
        if item.base.currency() != cur {
            return Err(Error::invalid(
                "price.currency",
                format!("{} is not in {cur}", item.base),
            ));
        }
        let prepared = item.policy.prepare(&item.first);
        let mut pos = item.first;
        let mut current: Option<(Money, u64, u32, u32)> = None; // price, rules, first, count
        for _ in 0..item.quantity {
            let rules = prepared.mask(&pos);
            match &mut current {
                // Same rules, same price: no decimal arithmetic.
                Some((_, r, _, n)) if *r == rules => *n += 1,
                _ => {
                    let price = item.policy.price_for(item.base, rules)?;
                    if let Some(done) = current.take() {
                        lines.push(new_line(item, done, zero));
                    }
                    current = Some((price, rules, pos.tier_sold_before, 1));
                }
            }
            pos = pos.next();
        }
        if let Some(done) = current {
            lines.push(new_line(item, done, zero));
        }
    }
    // 2. Coupon.
    if let Some(c) = coupon {
        c.validate(cur)?;
        if c.organization != ctx.organization {
            return Err(Error::invalid("coupon", "issued by another organization"));
        }
        if c.valid_from.is_some_and(|f| ctx.now < f) || c.valid_until.is_some_and(|u| ctx.now >= u)
        {
            return Err(Error::invalid(
                "coupon",
                format!("{} is not valid now", c.code),
            ));
        }
        let applicable = |l: &QuoteLine| c.applies_to(ctx.organization, ctx.event_id, l.tier_id);
        let units: u32 = lines
            .iter()
            .filter(|l| applicable(l))
            .map(|l| l.quantity)
            .sum();
        if units == 0 {
            return Err(Error::invalid(
                "coupon",
                format!("{} does not apply to this order", c.code),
            ));
        }
        if units < c.min_quantity {
            return Err(Error::invalid(
                "coupon",
                format!("{} needs at least {} tickets", c.code, c.min_quantity),
            ));
        }
        match c.discount {
            Discount::Percent(p) => {
                for l in lines.iter_mut().filter(|l| applicable(l)) {
                    l.discount = percent_of(l.unit_price, p, Rounding::Down)?.times(l.quantity)?;
                }
            }
            Discount::Fixed(amount) => {
                let mut left = amount;
                for l in lines.iter_mut().filter(|l| applicable(l)) {
                    let line = l.unit_price.times(l.quantity)?;
                    let take = left.min(line)?;
                    l.discount = take;
                    left = left.checked_sub(take)?;
                }
            }
        }
    }
    // 3. Fees, 4. tax, totals.
    let per_ticket = fees.per_ticket.unwrap_or(zero);
    let order_fee = fees.per_order.unwrap_or(zero);
    let tax_of = |amount: Money| -> Result<Money> {
        match tax {
            None => Ok(zero),
            Some(Tax {
                rate,
                mode: TaxMode::Exclusive,
            }) => percent_of(amount, *rate, Rounding::HalfUp),
            Some(Tax {
                rate,
                mode: TaxMode::Inclusive,
            }) => amount.scale(*rate / (Decimal::ONE_HUNDRED + *rate), Rounding::HalfUp),
        }
    };
    let exclusive = matches!(
        tax,
        Some(Tax {
            mode: TaxMode::Exclusive,
            ..
        })
    );
    let mut total = zero;
    for l in &mut lines {
        l.fees = per_ticket.times(l.quantity)?;
        let taxable = l
            .unit_price
            .times(l.quantity)?
            .checked_sub(l.discount)?
            .checked_add(l.fees)?;
        l.tax = tax_of(taxable)?;
        l.total = if exclusive {
            taxable.checked_add(l.tax)?
        } else {
            taxable
        };
        total = total.checked_add(l.total)?;
    }
    let order_fee_tax = if order_fee.is_zero() {
        zero
    } else {
        tax_of(order_fee)?
    };
    total = total.checked_add(order_fee)?;
    if exclusive {
        total = total.checked_add(order_fee_tax)?;
    }
    Ok(Quote {
        currency: cur,
        lines,
        coupon: coupon.map(|c| c.id),
        order_fee,
        order_fee_tax,
        tax_mode: tax.map(|t| t.mode),
        total,
    })
}

/// The indexes of the rules set in `mask`, in increasing order: one step
/// per rule applied (most lines apply none), not one per possible rule.
fn rule_indexes(mask: u64) -> Vec<u8> {
    let mut indexes = Vec::with_capacity(mask.count_ones() as usize);
    let mut left = mask;
    while left != 0 {
        // At most 63: a u64 has 64 bits.
        indexes.push(left.trailing_zeros() as u8);
        left &= left - 1;
    }
    indexes
}

fn new_line(
    item: &OrderItem<'_>,
    (price, rules, first, count): (Money, u64, u32, u32),
    zero: Money,
) -> QuoteLine {
    QuoteLine {
        tier_id: item.tier_id,
        quantity: count,
        first_position: first,
        base_price: item.base,
        rules_applied: rule_indexes(rules),
        unit_price: price,
        discount: zero,
        fees: zero,
        tax: zero,
        total: zero,
    }
}

#[cfg(test)]
mod rule_index_tests {
    use super::rule_indexes;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn rule_indexes_are_the_set_bits_in_order(mask in any::<u64>()) {
            let expected: Vec<u8> = (0..64u8).filter(|i| mask & (1 << i) != 0).collect();
            prop_assert_eq!(rule_indexes(mask), expected);
        }
    }

    #[test]
    fn no_rule_and_every_rule() {
        assert!(rule_indexes(0).is_empty());
        assert_eq!(rule_indexes(u64::MAX), (0..64u8).collect::<Vec<_>>());
        assert_eq!(rule_indexes(1 << 63), vec![63]);
    }
}
