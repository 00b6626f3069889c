use async_trait::async_trait;
use ems_core::id::{BookingId, PaymentId, RefundId};
use ems_core::outbox::DomainEvent;
use ems_core::payment::*;
use ems_core::{Error, Result};
use uuid::Uuid;

use crate::row::{begin, commit, document, from_doc, get, json, json_text, record, tag, Docs, Tx};
use crate::{db, PostgresStore};

fn payment_row(row: &sqlx::postgres::PgRow) -> Result<Payment> {
    from_doc("payment", get::<Uuid>(row, "id")?, document(row)?)
}

fn refund_row(row: &sqlx::postgres::PgRow) -> Result<Refund> {
    from_doc("refund", get::<Uuid>(row, "id")?, get(row, "doc")?)
}

/// Locks and reads a payment.
pub(crate) async fn lock_payment(tx: &mut Tx, id: PaymentId) -> Result<Payment> {
    sqlx::query("SELECT id, doc, body FROM ems_payments WHERE id = $1 FOR UPDATE")
        .bind(id.0)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?
        .as_ref()
        .map(payment_row)
        .transpose()?
        .ok_or_else(|| Error::not_found("payment", id))
}

/// A booking's refunds, oldest first.
pub(crate) async fn refunds_of_booking<'e, E>(
    executor: E,
    booking: BookingId,
) -> Result<Vec<Refund>>
where
    E: sqlx::PgExecutor<'e>,
{
    sqlx::query("SELECT id, doc FROM ems_refunds WHERE booking_id = $1 ORDER BY seq")
        .bind(booking.0)
        .fetch_all(executor)
        .await
        .map_err(db)?
        .iter()
        .map(refund_row)
        .collect()
}

/// Inserts a refund row (checked by the caller).
pub(crate) async fn insert_refund_row(tx: &mut Tx, refund: &Refund) -> Result<()> {
    sqlx::query(
        "INSERT INTO ems_refunds (id, payment_id, booking_id, amount, currency, status, version, doc) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(refund.id.0)
    .bind(refund.payment_id.0)
    .bind(refund.booking_id.0)
    .bind(refund.amount.amount())
    .bind(refund.amount.currency().code())
    .bind(tag(&refund.status))
    .bind(refund.version as i64)
    .bind(json(refund)?)
    .execute(&mut **tx)
    .await
    .map_err(|e| match db(e) {
        Error::AlreadyExists { entity, field, .. } => Error::AlreadyExists {
            entity,
            field,
            value: refund.id.to_string(),
        },
        other => other,
    })?;
    Ok(())
}

/// `q` with a rewritten payment's `$1` to `$6`: its id, the columns that
/// change (reference, refunded, status, version) and its document.
fn bind_rewrite<'q>(
    q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    payment: &'q Payment,
) -> Result<sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>> {
    Ok(q.bind(payment.id.0)
        .bind(&payment.reference)
        .bind(payment.refunded.amount())
        .bind(tag(&payment.status))
        .bind(payment.version as i64)
        .bind(json_text(payment)?))
}

async fn write_payment(tx: &mut Tx, payment: &Payment, docs: Docs) -> Result<()> {
    let sql = format!(
        "UPDATE ems_payments SET reference = $2, refunded = $3, status = $4, version = $5, {} \
         WHERE id = $1",
        docs.set("$6")
    );
    bind_rewrite(sqlx::query(&sql), payment)?
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(())
}

#[async_trait]
impl PaymentStore for PostgresStore {
    async fn insert_payment(&self, payment: &Payment) -> Result<Payment> {
        let started = DomainEvent::PaymentStarted {
            booking_id: payment.booking_id,
            payment_id: payment.id,
            amount: payment.amount,
        };
        // One statement: the booking check, the insert and its domain event.
        let sql = format!(
            "WITH b AS (SELECT event_id FROM ems_bookings WHERE id = $2), \
             p AS (INSERT INTO ems_payments (id, booking_id, event_id, gateway, reference, amount, \
                   refunded, currency, status, idempotency_key, version, {doc}) \
                   SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 FROM b WHERE b.event_id = $3 \
                   ON CONFLICT (idempotency_key) DO NOTHING RETURNING id), \
             o AS (INSERT INTO ems_outbox (occurred_at, doc) SELECT $13, $14 FROM p) \
             SELECT (SELECT event_id FROM b) AS booking_event, (SELECT count(*) FROM p) AS inserted",
            doc = self.docs().await.column()
        );
        let row = sqlx::query(&sql)
            .bind(payment.id.0)
            .bind(payment.booking_id.0)
            .bind(payment.event_id.0)
            .bind(&payment.gateway)
            .bind(&payment.reference)
            .bind(payment.amount.amount())
            .bind(payment.refunded.amount())
            .bind(payment.amount.currency().code())
            .bind(tag(&payment.status))
            .bind(&payment.idempotency_key)
            .bind(payment.version as i64)
            .bind(json_text(payment)?)
            .bind(payment.created_at)
            .bind(json(&started)?)
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        let booking_event: Option<Uuid> = get(&row, "booking_event")?;
        let inserted: i64 = get(&row, "inserted")?;
        match booking_event {
            None => return Err(Error::not_found("booking", payment.booking_id)),
            Some(e) if e != payment.event_id.0 => {
                return Err(Error::invalid(
                    "event_id",
                    "the booking is for another event",
                ))
            }
            Some(_) if inserted == 1 => return Ok(payment.clone()),
            Some(_) => {}
        }
        sqlx::query("SELECT id, doc, body FROM ems_payments WHERE idempotency_key = $1")
            .bind(&payment.idempotency_key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .as_ref()
            .map(payment_row)
            .transpose()?
            .ok_or_else(|| Error::not_found("payment", &payment.idempotency_key))
    }

    async fn payment(&self, id: PaymentId) -> Result<Option<Payment>> {
        sqlx::query("SELECT id, doc, body FROM ems_payments WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .as_ref()
            .map(payment_row)
            .transpose()
    }

    async fn payment_by_reference(
        &self,
        gateway: &str,
        reference: &str,
    ) -> Result<Option<Payment>> {
        sqlx::query(
            "SELECT id, doc, body FROM ems_payments WHERE gateway = $1 AND reference = $2 \
             ORDER BY seq DESC LIMIT 1",
        )
        .bind(gateway)
        .bind(reference)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .as_ref()
        .map(payment_row)
        .transpose()
    }

    async fn payments_for_booking(&self, booking: BookingId) -> Result<Vec<Payment>> {
        sqlx::query("SELECT id, doc, body FROM ems_payments WHERE booking_id = $1 ORDER BY seq")
            .bind(booking.0)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?
            .iter()
            .map(payment_row)
            .collect()
    }

    async fn update_payment(&self, payment: &Payment) -> Result<()> {
        // The event a status change records depends only on the new record; the
        // statement stores it only if the stored status differs.
        let change = payment_change_event(
            if payment.status == PaymentStatus::Pending {
                PaymentStatus::Succeeded
            } else {
                PaymentStatus::Pending
            },
            payment,
        );
        let change = change.as_ref().map(json).transpose()?;
        let sql = format!(
            "WITH old AS (SELECT status, version FROM ems_payments WHERE id = $1 FOR UPDATE), \
             upd AS (UPDATE ems_payments p SET reference = $2, refunded = $3, status = $4, version = $5, \
                     {set_doc} FROM old WHERE p.id = $1 AND old.version = $5 - 1 RETURNING old.status), \
             o AS (INSERT INTO ems_outbox (occurred_at, doc) SELECT $7, $8 FROM upd \
                   WHERE $8::jsonb IS NOT NULL AND upd.status <> $4) \
             SELECT (SELECT version FROM old) AS found, (SELECT count(*) FROM upd) AS updated",
            set_doc = self.docs().await.set("$6")
        );
        let row = bind_rewrite(sqlx::query(&sql), payment)?
            .bind(payment.updated_at)
            .bind(change)
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        let found: Option<i64> = get(&row, "found")?;
        let updated: i64 = get(&row, "updated")?;
        match found {
            None => Err(Error::not_found("payment", payment.id)),
            Some(found) if updated == 0 => Err(Error::Conflict {
                entity: "payment",
                id: payment.id.to_string(),
                expected: payment.version - 1,
                found: found as u64,
            }),
            Some(_) => Ok(()),
        }
    }

    async fn insert_refund(&self, refund: &Refund) -> Result<()> {
        let mut tx = begin(&self.pool).await?;
        let payment = lock_payment(&mut tx, refund.payment_id).await?;
        if payment.booking_id != refund.booking_id {
            return Err(Error::invalid(
                "booking_id",
                "refund names another booking than its payment",
            ));
        }
        let others = refunds_of_booking(&mut *tx, refund.booking_id).await?;
        if others.iter().any(|r| r.id == refund.id) {
            return Err(Error::already_exists("refund", "id", refund.id));
        }
        check_refundable(&payment, refund, &others)?;
        insert_refund_row(&mut tx, refund).await?;
        record(
            &mut tx,
            refund.created_at,
            [DomainEvent::RefundRequested {
                booking_id: refund.booking_id,
                refund_id: refund.id,
                amount: refund.amount,
            }],
        )
        .await?;
        commit(tx).await
    }

    async fn refund(&self, id: RefundId) -> Result<Option<Refund>> {
        sqlx::query("SELECT id, doc FROM ems_refunds WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .as_ref()
            .map(refund_row)
            .transpose()
    }

    async fn update_refund(&self, refund: &Refund) -> Result<()> {
        let payment_id: Uuid =
            sqlx::query_scalar("SELECT payment_id FROM ems_refunds WHERE id = $1")
                .bind(refund.id.0)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?
                .ok_or_else(|| Error::not_found("refund", refund.id))?;
        let docs = self.docs().await;
        let mut tx = begin(&self.pool).await?;
        // Payment first, then refund: the order every refund change takes.
        let mut payment = lock_payment(&mut tx, PaymentId(payment_id)).await?;
        let current = sqlx::query("SELECT id, doc FROM ems_refunds WHERE id = $1 FOR UPDATE")
            .bind(refund.id.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .as_ref()
            .map(refund_row)
            .transpose()?
            .ok_or_else(|| Error::not_found("refund", refund.id))?;
        check_refund_change(&current, refund)?;
        if refund.status == RefundStatus::Succeeded && current.status != RefundStatus::Succeeded {
            payment.refunded = payment.refunded.checked_add(refund.amount)?;
            payment.version += 1;
            payment.updated_at = refund.updated_at;
            write_payment(&mut tx, &payment, docs).await?;
        }
        sqlx::query("UPDATE ems_refunds SET status = $2, version = $3, doc = $4 WHERE id = $1")
            .bind(refund.id.0)
            .bind(tag(&refund.status))
            .bind(refund.version as i64)
            .bind(json(refund)?)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        record(
            &mut tx,
            refund.updated_at,
            refund_change_event(&current, refund),
        )
        .await?;
        commit(tx).await
    }

    async fn refunds_for_booking(&self, booking: BookingId) -> Result<Vec<Refund>> {
        refunds_of_booking(&self.pool, booking).await
    }
}
