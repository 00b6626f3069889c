use async_trait::async_trait;

use super::Coupon;
use crate::id::{CouponId, OrganizationId};
use crate::{Error, Result};

/// Storage port for coupons. A coupon's uses are consumed inside
/// [`InventoryStore::try_hold`](crate::inventory::InventoryStore::try_hold).
///
/// # Contract
/// - `insert_coupon` refuses a second coupon with the same code (case-insensitive)
///   in the same organization with `AlreadyExists` on `code`.
/// - `try_hold` with `request.coupon` resolves the code within the event's
///   organization (`InvalidInput` on `coupon` if unknown), refuses it when its
///   `max_uses` or the customer's `max_uses_per_customer` are used up
///   (`InvalidInput` on `coupon`), and otherwise counts one use for the order and
///   one for the customer **atomically with the hold**: two customers racing for
///   the last use, through any number of handles, get it once.
/// - A hold that ends without payment (released, expired, failed, its event
///   cancelled) gives its coupon use back; a confirmed one keeps it, also when the
///   booking is cancelled later.
#[async_trait]
pub trait CouponStore: Send + Sync + 'static {
    /// Stores a new coupon.
    async fn insert_coupon(&self, coupon: &Coupon) -> Result<()>;
    /// Reads a coupon.
    async fn coupon(&self, id: CouponId) -> Result<Option<Coupon>>;
    /// Finds an organization's coupon by code (case-insensitive).
    async fn coupon_by_code(
        &self,
        organization: OrganizationId,
        code: &str,
    ) -> Result<Option<Coupon>>;
    /// Uses currently counted (held and sold).
    async fn coupon_uses(&self, id: CouponId) -> Result<u32>;
}

/// The key a coupon code is unique under within its organization: trimmed and
/// lower-cased, so `" Early "` and `"EARLY"` name the same coupon.
pub fn coupon_code_key(code: &str) -> String {
    code.trim().to_lowercase()
}

/// Checks a coupon's use limits, given the uses counted so far in total and by
/// the ordering customer. Stores call it inside the hold's atomic step with the
/// counts they have locked; `code` is what the customer typed, for the message.
pub fn check_coupon_uses(coupon: &Coupon, code: &str, uses: u32, customer_uses: u32) -> Result<()> {
    if coupon.max_uses.is_some_and(|max| uses >= max) {
        return Err(Error::invalid(
            "coupon",
            format!("{code:?} has no uses left"),
        ));
    }
    if coupon
        .max_uses_per_customer
        .is_some_and(|max| customer_uses >= max)
    {
        return Err(Error::invalid(
            "coupon",
            format!("{code:?} was already used the allowed number of times by this customer"),
        ));
    }
    Ok(())
}

/// The error for a code no coupon of the organization has.
pub fn unknown_coupon(code: &str) -> Error {
    Error::invalid(
        "coupon",
        format!("{code:?} is not a code of this organizer"),
    )
}
