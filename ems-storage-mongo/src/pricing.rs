use async_trait::async_trait;
use ems_core::id::{CouponId, OrganizationId};
use ems_core::pricing::{coupon_code_key, Coupon, CouponStore};
use ems_core::{Error, Result};
use mongodb::bson::doc;

use crate::bsonx::{body, count, from_body};
use crate::error::is_duplicate;
use crate::{db, MongoStore};

#[async_trait]
impl CouponStore for MongoStore {
    async fn insert_coupon(&self, coupon: &Coupon) -> Result<()> {
        let _turn = self.turn().await;
        let inserted = self
            .col("coupons")
            .insert_one(doc! {
                "_id": self.uid(coupon.id.0),
                "organization": self.uid(coupon.organization.0),
                "code_key": coupon_code_key(&coupon.code),
                "uses": 0_i64,
                "per_customer": {},
                "rev": 0_i64,
                "body": body(coupon)?,
            })
            .await;
        match inserted {
            Err(e) if is_duplicate(&e) => {
                let taken = self.coupon(coupon.id).await?.is_some();
                Err(Error::AlreadyExists {
                    entity: "coupon",
                    field: if taken { "id" } else { "code" },
                    value: if taken {
                        coupon.id.to_string()
                    } else {
                        coupon.code.clone()
                    },
                })
            }
            other => other.map(|_| ()).map_err(db),
        }
    }

    async fn coupon(&self, id: CouponId) -> Result<Option<Coupon>> {
        self.col("coupons")
            .find_one(doc! { "_id": self.uid(id.0) })
            .await
            .map_err(db)?
            .map(|d| from_body("coupon", &d))
            .transpose()
    }

    async fn coupon_by_code(
        &self,
        organization: OrganizationId,
        code: &str,
    ) -> Result<Option<Coupon>> {
        self.col("coupons")
            .find_one(doc! { "organization": self.uid(organization.0), "code_key": coupon_code_key(code) })
            .await
            .map_err(db)?
            .map(|d| from_body("coupon", &d))
            .transpose()
    }

    async fn coupon_uses(&self, id: CouponId) -> Result<u32> {
        match self
            .col("coupons")
            .find_one(doc! { "_id": self.uid(id.0) })
            .await
            .map_err(db)?
        {
            Some(d) => count("coupon", &d, "uses"),
            None => Ok(0),
        }
    }
}
