use async_trait::async_trait;
use ems_core::id::{CouponId, OrganizationId};
use ems_core::pricing::{coupon_code_key, Coupon, CouponStore};
use ems_core::{Error, Result};
use uuid::Uuid;

use crate::row::{count, from_doc, get, json};
use crate::{db, PostgresStore};

#[async_trait]
impl CouponStore for PostgresStore {
    async fn insert_coupon(&self, coupon: &Coupon) -> Result<()> {
        sqlx::query(
            "INSERT INTO ems_coupons (id, organization, code_key, doc) VALUES ($1, $2, $3, $4)",
        )
        .bind(coupon.id.0)
        .bind(coupon.organization.0)
        .bind(coupon_code_key(&coupon.code))
        .bind(json(coupon)?)
        .execute(&self.pool)
        .await
        .map_err(|e| match db(e) {
            Error::AlreadyExists { entity, field, .. } => Error::AlreadyExists {
                entity,
                field,
                value: if field == "code" {
                    coupon.code.clone()
                } else {
                    coupon.id.to_string()
                },
            },
            other => other,
        })?;
        Ok(())
    }

    async fn coupon(&self, id: CouponId) -> Result<Option<Coupon>> {
        sqlx::query("SELECT doc FROM ems_coupons WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .map(|r| from_doc("coupon", id, get(&r, "doc")?))
            .transpose()
    }

    async fn coupon_by_code(
        &self,
        organization: OrganizationId,
        code: &str,
    ) -> Result<Option<Coupon>> {
        sqlx::query("SELECT id, doc FROM ems_coupons WHERE organization = $1 AND code_key = $2")
            .bind(organization.0)
            .bind(coupon_code_key(code))
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .map(|r| from_doc("coupon", get::<Uuid>(&r, "id")?, get(&r, "doc")?))
            .transpose()
    }

    async fn coupon_uses(&self, id: CouponId) -> Result<u32> {
        let uses: Option<i64> = sqlx::query_scalar("SELECT uses FROM ems_coupons WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        count("coupon", id.0, uses.unwrap_or(0))
    }
}
