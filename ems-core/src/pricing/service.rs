use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Coupon, CouponScope, Discount};
use crate::id::{CouponId, OrganizationId};
use crate::{Actor, Ems, Error, Result};

/// Input of [`Ems::create_coupon`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewCoupon {
    /// The issuing organization.
    pub organization: OrganizationId,
    /// The code customers type.
    pub code: String,
    /// What it applies to.
    pub scope: CouponScope,
    /// How much it takes off.
    pub discount: Discount,
    /// Valid from.
    pub valid_from: Option<DateTime<Utc>>,
    /// Valid until.
    pub valid_until: Option<DateTime<Utc>>,
    /// Fewest units an order must have.
    pub min_quantity: u32,
    /// Uses in total.
    pub max_uses: Option<u32>,
    /// Uses per customer.
    pub max_uses_per_customer: Option<u32>,
}

impl Ems {
    /// Creates a promo code. The organization's organizers and admins; an event or
    /// tier scope must belong to the organization, and a fixed discount be in that
    /// event's currency.
    pub async fn create_coupon(&self, actor: &Actor, new: NewCoupon) -> Result<Coupon> {
        actor.require_manages(new.organization, "create coupon")?;
        let currency = match new.scope {
            CouponScope::Organization => match new.discount {
                Discount::Fixed(m) => m.currency(),
                _ => crate::money::Currency::EUR,
            },
            CouponScope::Event(e) | CouponScope::Tier { event: e, .. } => {
                let event = self
                    .port()
                    .event(e)
                    .await?
                    .ok_or_else(|| Error::not_found("event", e))?;
                if event.organization != new.organization {
                    return Err(Error::invalid(
                        "coupon.scope",
                        "the event belongs to another organization",
                    ));
                }
                if let CouponScope::Tier { tier, .. } = new.scope {
                    if !self.port().tiers(e).await?.iter().any(|t| t.id == tier) {
                        return Err(Error::invalid(
                            "coupon.scope",
                            format!("tier {tier} is not a tier of event {e}"),
                        ));
                    }
                }
                event.currency
            }
        };
        let coupon = Coupon {
            id: CouponId::new(),
            code: new.code.trim().to_owned(),
            organization: new.organization,
            scope: new.scope,
            discount: new.discount,
            valid_from: new.valid_from,
            valid_until: new.valid_until,
            min_quantity: new.min_quantity,
            max_uses: new.max_uses,
            max_uses_per_customer: new.max_uses_per_customer,
        };
        coupon.validate(currency)?;
        self.port().insert_coupon(&coupon).await?;
        Ok(coupon)
    }

    /// How many uses of a coupon are counted now: its organization's organizers and admins.
    pub async fn coupon_uses(&self, actor: &Actor, id: CouponId) -> Result<u32> {
        let c = self
            .port()
            .coupon(id)
            .await?
            .ok_or_else(|| Error::not_found("coupon", id))?;
        actor.require_manages(c.organization, "read coupon")?;
        self.port().coupon_uses(id).await
    }
}
