use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One step of a refund policy: cancelling at least `secs_before_start` before the
/// event starts returns `percent` of the price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefundRule {
    /// How long before the start (seconds) the cancellation must happen.
    pub secs_before_start: i64,
    /// Percent returned, 0..=100.
    pub percent: Decimal,
}

/// What a customer gets back when cancelling: the best rule whose deadline has not
/// passed applies; none means no refund (and no cancellation).
///
/// ```
/// use chrono::{Duration, TimeZone, Utc};
/// use rust_decimal_macros::dec;
/// use ems_core::booking::RefundPolicy;
/// let policy = RefundPolicy::tiered(&[(Duration::days(7), dec!(100)), (Duration::days(1), dec!(50))]).unwrap();
/// let start = Utc.with_ymd_and_hms(2030, 6, 1, 20, 0, 0).unwrap();
/// assert_eq!(policy.percent_at(start - Duration::days(10), start), Some(dec!(100)));
/// assert_eq!(policy.percent_at(start - Duration::days(3), start), Some(dec!(50)));
/// assert_eq!(policy.percent_at(start - Duration::hours(2), start), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefundPolicy {
    /// The steps, any order.
    pub rules: Vec<RefundRule>,
}

impl Default for RefundPolicy {
    /// Full refund until the event starts.
    fn default() -> Self {
        Self {
            rules: vec![RefundRule {
                secs_before_start: 0,
                percent: Decimal::ONE_HUNDRED,
            }],
        }
    }
}

impl RefundPolicy {
    /// No cancellation by customers.
    pub fn none() -> Self {
        Self { rules: Vec::new() }
    }

    /// Steps of `(deadline before start, percent)`.
    pub fn tiered(steps: &[(Duration, Decimal)]) -> Result<Self> {
        let p = Self {
            rules: steps
                .iter()
                .map(|(d, pct)| RefundRule {
                    secs_before_start: d.num_seconds(),
                    percent: *pct,
                })
                .collect(),
        };
        p.validate()?;
        Ok(p)
    }

    /// Checks every rule (percent in 0..=100, deadline not negative, no two
    /// rules with the same deadline).
    pub fn validate(&self) -> Result<()> {
        for (i, r) in self.rules.iter().enumerate() {
            if r.percent < Decimal::ZERO || r.percent > Decimal::ONE_HUNDRED {
                return Err(Error::invalid(
                    "refund_policy.percent",
                    format!("{} is outside 0..=100", r.percent),
                ));
            }
            if r.secs_before_start < 0 {
                return Err(Error::invalid(
                    "refund_policy.secs_before_start",
                    "must not be negative",
                ));
            }
            if self.rules[..i]
                .iter()
                .any(|o| o.secs_before_start == r.secs_before_start)
            {
                return Err(Error::invalid(
                    "refund_policy",
                    "two rules with the same deadline",
                ));
            }
        }
        Ok(())
    }

    /// The percent refunded when cancelling at `now` for an event starting at
    /// `starts_at`; `None` when no rule applies any more.
    pub fn percent_at(&self, now: DateTime<Utc>, starts_at: DateTime<Utc>) -> Option<Decimal> {
        let before = (starts_at - now).num_seconds();
        if before < 0 {
            return None;
        }
        self.rules
            .iter()
            .filter(|r| before >= r.secs_before_start)
            .map(|r| r.percent)
            .max()
    }
}
