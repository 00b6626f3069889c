use async_trait::async_trait;
use ems_core::id::{BookingId, PaymentId, RefundId};
use ems_core::outbox::DomainEvent;
use ems_core::payment::*;
use ems_core::{Error, Result};
use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use mongodb::ClientSession;

use crate::bsonx::{body, from_body, int, money, tag};
use crate::error::is_duplicate;
use crate::outbox::record;
use crate::tx::transaction;
use crate::{db, MongoStore};

/// A payment by id, in the transaction or outside it.
pub(crate) async fn read_payment(
    store: &MongoStore,
    s: Option<&mut ClientSession>,
    id: PaymentId,
) -> Result<Option<Payment>> {
    store.read_by_id(s, "payments", "payment", id.0).await
}

/// A booking's refunds, oldest first.
pub(crate) async fn refunds_of(
    store: &MongoStore,
    s: Option<&mut ClientSession>,
    booking: BookingId,
) -> Result<Vec<Refund>> {
    let col = store.col("refunds");
    let q = col
        .find(doc! { "booking_id": store.uid(booking.0) })
        .sort(doc! { "_id": 1 });
    let docs: Vec<Document> = match s {
        Some(s) => q
            .session(&mut *s)
            .await
            .map_err(db)?
            .stream(&mut *s)
            .try_collect()
            .await
            .map_err(db)?,
        None => q.await.map_err(db)?.try_collect().await.map_err(db)?,
    };
    docs.iter().map(|d| from_body("refund", d)).collect()
}

fn payment_fields(payment: &Payment) -> Result<Document> {
    Ok(doc! {
        "reference": payment.reference.clone(),
        "refunded": money(&payment.refunded)?,
        "status": tag(&payment.status),
        "version": payment.version as i64,
        "body": body(payment)?,
    })
}

/// Inserts a refund (checked by the caller).
pub(crate) async fn insert_refund_doc(
    store: &MongoStore,
    s: &mut ClientSession,
    refund: &Refund,
) -> Result<()> {
    let inserted = store
        .col("refunds")
        .insert_one(doc! {
            "_id": store.uid(refund.id.0),
            "payment_id": store.uid(refund.payment_id.0),
            "booking_id": store.uid(refund.booking_id.0),
            "amount": money(&refund.amount)?,
            "status": tag(&refund.status),
            "version": refund.version as i64,
            "body": body(refund)?,
        })
        .session(&mut *s)
        .await;
    match inserted {
        Err(e) if is_duplicate(&e) => Err(Error::already_exists("refund", "id", refund.id)),
        other => other.map(|_| ()).map_err(db),
    }
}

/// Locks a payment for the transaction (a write to it makes racing changes
/// conflict); returns it with the revision to seal.
async fn lock_payment(
    store: &MongoStore,
    s: &mut ClientSession,
    id: PaymentId,
) -> Result<(Payment, i64)> {
    let d = store
        .col("payments")
        .find_one_and_update(
            doc! { "_id": store.uid(id.0) },
            doc! { "$inc": { "rev": 1_i64 } },
        )
        .return_document(mongodb::options::ReturnDocument::After)
        .session(&mut *s)
        .await
        .map_err(db)?
        .ok_or_else(|| Error::not_found("payment", id))?;
    Ok((from_body("payment", &d)?, int("payment", &d, "rev")?))
}

#[async_trait]
impl PaymentStore for MongoStore {
    async fn insert_payment(&self, payment: &Payment) -> Result<Payment> {
        let outcome: Result<()> = transaction!(self, |s| {
            let booking = self
                .col("bookings")
                .find_one(doc! { "_id": self.uid(payment.booking_id.0) })
                .session(&mut s)
                .await
                .map_err(db)?
                .ok_or_else(|| Error::not_found("booking", payment.booking_id))?;
            let event =
                crate::bsonx::read_uuid("booking", payment.booking_id, booking.get("event_id"))?;
            if event != payment.event_id.0 {
                return Err(Error::invalid(
                    "event_id",
                    "the booking is for another event",
                ));
            }
            let mut d = payment_fields(payment)?;
            d.insert("_id", self.uid(payment.id.0));
            d.insert("booking_id", self.uid(payment.booking_id.0));
            d.insert("event_id", self.uid(payment.event_id.0));
            d.insert("gateway", &payment.gateway);
            d.insert("amount", money(&payment.amount)?);
            d.insert("key", &payment.idempotency_key);
            match self.col("payments").insert_one(d).session(&mut s).await {
                Err(e) if is_duplicate(&e) => {
                    return Err(Error::already_exists(
                        "payment",
                        "idempotency_key",
                        &payment.idempotency_key,
                    ))
                }
                other => other.map_err(db)?,
            };
            record(
                self,
                &mut s,
                payment.created_at,
                [DomainEvent::PaymentStarted {
                    booking_id: payment.booking_id,
                    payment_id: payment.id,
                    amount: payment.amount,
                }],
            )
            .await
        });
        match outcome {
            Ok(()) => Ok(payment.clone()),
            Err(Error::AlreadyExists { .. }) => self
                .col("payments")
                .find_one(doc! { "key": &payment.idempotency_key })
                .await
                .map_err(db)?
                .map(|d| from_body("payment", &d))
                .transpose()?
                // No payment has the key: the duplicate was the id.
                .ok_or_else(|| Error::already_exists("payment", "id", payment.id)),
            Err(e) => Err(e),
        }
    }

    async fn payment(&self, id: PaymentId) -> Result<Option<Payment>> {
        read_payment(self, None, id).await
    }

    async fn payment_by_reference(
        &self,
        gateway: &str,
        reference: &str,
    ) -> Result<Option<Payment>> {
        self.col("payments")
            .find_one(doc! { "gateway": gateway, "reference": reference })
            .sort(doc! { "_id": -1 })
            .await
            .map_err(db)?
            .map(|d| from_body("payment", &d))
            .transpose()
    }

    async fn payments_for_booking(&self, booking: BookingId) -> Result<Vec<Payment>> {
        let docs: Vec<Document> = self
            .col("payments")
            .find(doc! { "booking_id": self.uid(booking.0) })
            .sort(doc! { "_id": 1 })
            .await
            .map_err(db)?
            .try_collect()
            .await
            .map_err(db)?;
        docs.iter().map(|d| from_body("payment", d)).collect()
    }

    async fn update_payment(&self, payment: &Payment) -> Result<()> {
        transaction!(self, |s| {
            let (current, rev) = lock_payment(self, &mut s, payment.id).await?;
            check_payment_version(payment, current.version)?;
            self.col("payments")
                .update_one(
                    doc! { "_id": self.uid(payment.id.0) },
                    doc! { "$set": payment_fields(payment)? },
                )
                .session(&mut s)
                .await
                .map_err(db)?;
            crate::tx::seal(self, &mut s, "payments", self.uid(payment.id.0), rev).await?;
            record(
                self,
                &mut s,
                payment.updated_at,
                payment_change_event(current.status, payment),
            )
            .await
        })
    }

    async fn insert_refund(&self, refund: &Refund) -> Result<()> {
        transaction!(self, |s| {
            let (payment, rev) = lock_payment(self, &mut s, refund.payment_id).await?;
            if payment.booking_id != refund.booking_id {
                return Err(Error::invalid(
                    "booking_id",
                    "refund names another booking than its payment",
                ));
            }
            let others = refunds_of(self, Some(&mut s), refund.booking_id).await?;
            if others.iter().any(|r| r.id == refund.id) {
                return Err(Error::already_exists("refund", "id", refund.id));
            }
            check_refundable(&payment, refund, &others)?;
            insert_refund_doc(self, &mut s, refund).await?;
            crate::tx::seal(self, &mut s, "payments", self.uid(payment.id.0), rev).await?;
            record(
                self,
                &mut s,
                refund.created_at,
                [DomainEvent::RefundRequested {
                    booking_id: refund.booking_id,
                    refund_id: refund.id,
                    amount: refund.amount,
                }],
            )
            .await
        })
    }

    async fn refund(&self, id: RefundId) -> Result<Option<Refund>> {
        self.col("refunds")
            .find_one(doc! { "_id": self.uid(id.0) })
            .await
            .map_err(db)?
            .map(|d| from_body("refund", &d))
            .transpose()
    }

    async fn update_refund(&self, refund: &Refund) -> Result<()> {
        let payment_id = self
            .refund(refund.id)
            .await?
            .ok_or_else(|| Error::not_found("refund", refund.id))?
            .payment_id;
        transaction!(self, |s| {
            let (mut payment, rev) = lock_payment(self, &mut s, payment_id).await?;
            let current: Refund = self
                .col("refunds")
                .find_one(doc! { "_id": self.uid(refund.id.0) })
                .session(&mut s)
                .await
                .map_err(db)?
                .map(|d| from_body("refund", &d))
                .transpose()?
                .ok_or_else(|| Error::not_found("refund", refund.id))?;
            check_refund_change(&current, refund)?;
            if refund.status == RefundStatus::Succeeded && current.status != RefundStatus::Succeeded
            {
                payment.refunded = payment.refunded.checked_add(refund.amount)?;
                payment.version += 1;
                payment.updated_at = refund.updated_at;
                self.col("payments")
                    .update_one(
                        doc! { "_id": self.uid(payment.id.0) },
                        doc! { "$set": payment_fields(&payment)? },
                    )
                    .session(&mut s)
                    .await
                    .map_err(db)?;
            }
            self.col("refunds")
                .update_one(
                    doc! { "_id": self.uid(refund.id.0) },
                    doc! { "$set": {
                        "status": tag(&refund.status),
                        "version": refund.version as i64,
                        "body": body(refund)?,
                    } },
                )
                .session(&mut s)
                .await
                .map_err(db)?;
            crate::tx::seal(self, &mut s, "payments", self.uid(payment_id.0), rev).await?;
            record(
                self,
                &mut s,
                refund.updated_at,
                refund_change_event(&current, refund),
            )
            .await
        })
    }

    async fn refunds_for_booking(&self, booking: BookingId) -> Result<Vec<Refund>> {
        refunds_of(self, None, booking).await
    }
}
