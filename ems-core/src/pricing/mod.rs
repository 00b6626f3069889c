//! Pricing: pure functions from a tier's base price, its surge policy, coupons,
//! fees and tax to a [`Quote`] with its breakdown.
//!
//! # Order of application (fixed)
//!
//! 1. **Surge**, per unit, by the unit's position in the sell sequence
//!    (marginal pricing): the k-th unit is priced as if k − 1 units were sold
//!    before it. Matching rules apply in their listed order to a running price
//!    that starts at the base price; the result is clamped to `[floor, ceiling]`
//!    and rounded to the currency's minor unit with the policy's rounding mode.
//! 2. **Coupon**, per line: a percentage comes off every unit (rounded down to the
//!    minor unit, so the customer never pays a fraction); a fixed amount comes off
//!    the order, line by line in order, never taking a line below zero.
//! 3. **Fees**: a per-ticket fee on every unit and a per-order fee once.
//! 4. **Tax** on the discounted ticket amounts and the fees: exclusive rates are
//!    added; inclusive rates are already in the price and only shown.
//!
//! Every amount is rounded once, where it is created, so a quote's total is the
//! exact sum of its lines in every currency.

mod policy;
mod quote;
mod service;
mod store;

pub use policy::{Effect, Scope, SurgePolicy, SurgeRule, Trigger, UnitPosition, MAX_RULES};
pub use quote::{
    price_order, Coupon, CouponScope, Discount, Fees, OrderContext, OrderItem, Quote, QuoteLine,
    Tax, TaxMode,
};
pub use service::NewCoupon;
pub use store::{check_coupon_uses, coupon_code_key, unknown_coupon, CouponStore};

#[cfg(test)]
mod tests;
