use async_trait::async_trait;
use ems_core::id::{CouponId, OrganizationId, UserId};
use ems_core::pricing::{check_coupon_uses, coupon_code_key, unknown_coupon, Coupon, CouponStore};
use ems_core::{Error, Result};

use crate::state::{CouponBook, CouponState};
use crate::MemoryStore;

fn code_key(organization: OrganizationId, code: &str) -> (OrganizationId, String) {
    (organization, coupon_code_key(code))
}

/// The organization's coupon named `code`, if `customer` may use it once more.
pub(crate) fn resolve<'a>(
    book: &'a CouponBook,
    organization: OrganizationId,
    code: &str,
    customer: UserId,
) -> Result<&'a Coupon> {
    let state = book
        .by_code
        .get(&code_key(organization, code))
        .and_then(|id| book.by_id.get(id))
        .ok_or_else(|| unknown_coupon(code))?;
    let mine = state.per_customer.get(&customer).copied().unwrap_or(0);
    check_coupon_uses(&state.coupon, code, state.uses, mine)?;
    Ok(&state.coupon)
}

#[async_trait]
impl CouponStore for MemoryStore {
    async fn insert_coupon(&self, coupon: &Coupon) -> Result<()> {
        let mut book = self.inner.coupons.lock();
        let key = code_key(coupon.organization, &coupon.code);
        if book.by_code.contains_key(&key) {
            return Err(Error::already_exists("coupon", "code", &coupon.code));
        }
        book.by_code.insert(key, coupon.id);
        book.by_id.insert(
            coupon.id,
            CouponState {
                coupon: coupon.clone(),
                uses: 0,
                per_customer: Default::default(),
            },
        );
        Ok(())
    }

    async fn coupon(&self, id: CouponId) -> Result<Option<Coupon>> {
        Ok(self
            .inner
            .coupons
            .lock()
            .by_id
            .get(&id)
            .map(|c| c.coupon.clone()))
    }

    async fn coupon_by_code(
        &self,
        organization: OrganizationId,
        code: &str,
    ) -> Result<Option<Coupon>> {
        let book = self.inner.coupons.lock();
        Ok(book
            .by_code
            .get(&code_key(organization, code))
            .and_then(|id| book.by_id.get(id))
            .map(|c| c.coupon.clone()))
    }

    async fn coupon_uses(&self, id: CouponId) -> Result<u32> {
        Ok(self
            .inner
            .coupons
            .lock()
            .by_id
            .get(&id)
            .map_or(0, |c| c.uses))
    }
}
