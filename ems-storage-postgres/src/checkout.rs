//! The checkout steps after the hold, a whole batch per transaction.
//!
//! A batch of openings is one transaction of three statements (lock the holds;
//! insert the bookings, link their holds and record `BookingCreated`; insert
//! the payment records and record `PaymentStarted`), a batch of settlements
//! one of two (move the payments to succeeded; confirm the bookings whose holds
//! are still active, with their tickets and `BookingConfirmed`). Requests the
//! batch statements cannot decide alone (a hold that lapsed, a reused key, a
//! payment someone else moved) are finished after the commit by the single-step
//! operations, which give exactly the answer they would have given alone.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ems_core::booking::{
    open_one, settle_one, BookingStore, CheckoutStore, ConfirmOutcome, OpenCheckout, Opened,
    SettlePaid, Settled,
};
use ems_core::inventory::{Hold, HoldStatus};
use ems_core::outbox::DomainEvent;
use ems_core::payment::{payment_change_event, Payment, PaymentStatus, PaymentStore};
use ems_core::Result;
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::Row;
use uuid::Uuid;

use crate::booking::check_tickets;
use crate::row::{self, begin, commit, json, tag, BOOKING, HOLD};
use crate::{db, PostgresStore};

/// Whether `hold` (locked) can take `request`'s booking now.
fn bookable(hold: Option<&Hold>, request: &OpenCheckout) -> bool {
    let b = &request.booking;
    hold.is_some_and(|h| {
        h.event_id == b.event_id
            && h.customer == b.customer
            && h.status_at(b.created_at) == HoldStatus::Active
            && h.booking_id.is_none()
            && h.lines == b.lines
            && h.total == b.total
    }) && request.payment.booking_id == b.id
        && request.payment.event_id == b.event_id
}

/// The answer of a request decided by the batch, or the request to finish alone.
enum Step<T> {
    Done(T),
    Alone,
}

impl PostgresStore {
    async fn open_batch(&self, batch: &[OpenCheckout]) -> Result<Vec<Step<Opened>>> {
        let mut tx = begin(&self.pool).await?;
        let hold_ids: Vec<Uuid> = batch.iter().map(|r| r.booking.hold_id.0).collect();
        let holds: HashMap<Uuid, Hold> = sqlx::query(&format!(
            "SELECT {HOLD} FROM ems_holds WHERE id = ANY($1) ORDER BY id FOR UPDATE"
        ))
        .bind(&hold_ids)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?
        .iter()
        .map(|r| row::hold(r).map(|h| (h.id.0, h)))
        .collect::<Result<_>>()?;

        // Requests the statements may decide: the hold takes the booking, and no
        // earlier request of the batch names the same hold or key (those run
        // alone after the batch, in order, and must see the earlier ones first).
        let mut holds_seen = HashSet::new();
        let mut keys_seen = HashSet::new();
        let eligible: Vec<bool> = batch
            .iter()
            .map(|r| {
                let fresh_hold = holds_seen.insert(r.booking.hold_id);
                let fresh_key =
                    keys_seen.insert((r.booking.customer, r.booking.idempotency_key.as_str()));
                fresh_hold && fresh_key && bookable(holds.get(&r.booking.hold_id.0), r)
            })
            .collect();
        let chosen: Vec<&OpenCheckout> = batch
            .iter()
            .zip(&eligible)
            .filter_map(|(r, ok)| ok.then_some(r))
            .collect();

        let mut inserted = HashSet::new();
        if !chosen.is_empty() {
            let mut cols = BookingColumns::default();
            for r in &chosen {
                cols.push(r)?;
            }
            let rows = sqlx::query(
                "WITH b AS (INSERT INTO ems_bookings (id, event_id, customer, hold_id, \
                     idempotency_key, status, reason, total, currency, created_at, updated_at, \
                     version, doc) \
                     SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], \
                         $5::text[], $6::text[], $7::jsonb[], $8::numeric[], $9::text[], \
                         $10::timestamptz[], $11::timestamptz[], $12::int8[], $13::jsonb[]) \
                     ON CONFLICT (customer, idempotency_key) DO NOTHING RETURNING id, hold_id), \
                 h AS (UPDATE ems_holds SET booking_id = b.id FROM b WHERE ems_holds.id = b.hold_id), \
                 o AS (INSERT INTO ems_outbox (occurred_at, doc) \
                     SELECT u.at, u.doc FROM unnest($1::uuid[], $10::timestamptz[], $14::jsonb[]) \
                         WITH ORDINALITY AS u(id, at, doc, n) \
                     WHERE u.id IN (SELECT id FROM b) ORDER BY u.n) \
                 SELECT id FROM b",
            )
            .bind(&cols.id)
            .bind(&cols.event)
            .bind(&cols.customer)
            .bind(&cols.hold)
            .bind(&cols.key)
            .bind(&cols.status)
            .bind(&cols.reason)
            .bind(&cols.total)
            .bind(&cols.currency)
            .bind(&cols.created)
            .bind(&cols.updated)
            .bind(&cols.version)
            .bind(&cols.doc)
            .bind(&cols.event_doc)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
            for r in rows {
                inserted.insert(r.try_get::<Uuid, _>(0).map_err(db)?);
            }
        }

        let mut paid = HashSet::new();
        let booked: Vec<&OpenCheckout> = chosen
            .iter()
            .copied()
            .filter(|r| inserted.contains(&r.booking.id.0))
            .collect();
        if !booked.is_empty() {
            let mut cols = PaymentColumns::default();
            for r in &booked {
                cols.push(&r.payment)?;
            }
            let rows = sqlx::query(
                "WITH p AS (INSERT INTO ems_payments (id, booking_id, event_id, gateway, reference, \
                     amount, refunded, currency, status, idempotency_key, version, doc) \
                     SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], \
                         $5::text[], $6::numeric[], $7::numeric[], $8::text[], $9::text[], \
                         $10::text[], $11::int8[], $12::jsonb[]) \
                     ON CONFLICT (idempotency_key) DO NOTHING RETURNING id), \
                 o AS (INSERT INTO ems_outbox (occurred_at, doc) \
                     SELECT u.at, u.doc FROM unnest($1::uuid[], $13::timestamptz[], $14::jsonb[]) \
                         WITH ORDINALITY AS u(id, at, doc, n) \
                     WHERE u.id IN (SELECT id FROM p) ORDER BY u.n) \
                 SELECT id FROM p",
            )
            .bind(&cols.id)
            .bind(&cols.booking)
            .bind(&cols.event)
            .bind(&cols.gateway)
            .bind(&cols.reference)
            .bind(&cols.amount)
            .bind(&cols.refunded)
            .bind(&cols.currency)
            .bind(&cols.status)
            .bind(&cols.key)
            .bind(&cols.version)
            .bind(&cols.doc)
            .bind(&cols.at)
            .bind(&cols.event_doc)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
            for r in rows {
                paid.insert(r.try_get::<Uuid, _>(0).map_err(db)?);
            }
        }
        commit(tx).await?;

        let mut steps = Vec::with_capacity(batch.len());
        for r in batch {
            let step = if inserted.contains(&r.booking.id.0) {
                let payment = if paid.contains(&r.payment.id.0) {
                    r.payment.clone()
                } else {
                    // The key named a payment already: it answers.
                    self.insert_payment(&r.payment).await?
                };
                Step::Done(Opened::Created {
                    booking: r.booking.clone(),
                    payment,
                })
            } else {
                Step::Alone
            };
            steps.push(step);
        }
        Ok(steps)
    }

    async fn settle_batch(&self, batch: &[SettlePaid]) -> Result<Vec<Step<Settled>>> {
        // As for openings: a request sharing its booking or payment with an
        // earlier one runs alone after the batch.
        let mut bookings_seen = HashSet::new();
        let mut payments_seen = HashSet::new();
        let chosen: Vec<&SettlePaid> = batch
            .iter()
            .filter(|r| {
                let fresh_booking = bookings_seen.insert(r.booking.id);
                let fresh_payment = payments_seen.insert(r.payment.id);
                fresh_booking
                    && fresh_payment
                    && r.payment.status == PaymentStatus::Succeeded
                    && r.payment.booking_id == r.booking.id
                    && r.confirm.booking_id == r.booking.id
                    && check_tickets(&r.booking, &r.confirm.tickets).is_ok()
            })
            .collect();
        let mut tx = begin(&self.pool).await?;
        let mut moved = HashSet::new();
        if !chosen.is_empty() {
            let mut cols = PaymentColumns::default();
            for r in &chosen {
                cols.push(&r.payment)?;
            }
            let rows = sqlx::query(
                "WITH u AS (SELECT * FROM unnest($1::uuid[], $2::text[], $3::numeric[], \
                     $4::text[], $5::int8[], $6::jsonb[], $7::timestamptz[], $8::jsonb[]) \
                     WITH ORDINALITY AS u(id, reference, refunded, status, version, doc, at, ev, n)), \
                 p AS (UPDATE ems_payments p SET reference = u.reference, refunded = u.refunded, \
                     status = u.status, version = u.version, doc = u.doc FROM u \
                     WHERE p.id = u.id AND p.version = u.version - 1 AND p.status = 'pending' \
                     RETURNING p.id), \
                 o AS (INSERT INTO ems_outbox (occurred_at, doc) \
                     SELECT u.at, u.ev FROM u WHERE u.id IN (SELECT id FROM p) \
                     AND u.ev IS NOT NULL ORDER BY u.n) \
                 SELECT id FROM p",
            )
            .bind(&cols.id)
            .bind(&cols.reference)
            .bind(&cols.refunded)
            .bind(&cols.status)
            .bind(&cols.version)
            .bind(&cols.doc)
            .bind(&cols.updated)
            .bind(&cols.change_doc)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
            for r in rows {
                moved.insert(r.try_get::<Uuid, _>(0).map_err(db)?);
            }
        }

        let mut confirmed = HashMap::new();
        let to_confirm: Vec<&SettlePaid> = chosen
            .iter()
            .copied()
            .filter(|r| moved.contains(&r.payment.id.0))
            .collect();
        if !to_confirm.is_empty() {
            let ids: Vec<Uuid> = to_confirm.iter().map(|r| r.booking.id.0).collect();
            let nows: Vec<DateTime<Utc>> = to_confirm.iter().map(|r| r.confirm.now).collect();
            let events = to_confirm
                .iter()
                .map(|r| {
                    json(&DomainEvent::BookingConfirmed {
                        event_id: r.booking.event_id,
                        booking_id: r.booking.id,
                        customer: r.booking.customer,
                        tickets: r.booking.quantity(),
                    })
                })
                .collect::<Result<Vec<Value>>>()?;
            let tickets = to_confirm
                .iter()
                .flat_map(|r| r.confirm.tickets.iter().map(json))
                .collect::<Result<Vec<Value>>>()?;
            // Only bookings still pending on an active, unexpired hold of their
            // own are confirmed here; the hold's row decides races with expiry.
            let rows = sqlx::query(&format!(
                "WITH u AS (SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::jsonb[]) \
                     WITH ORDINALITY AS u(booking, at, ev, n)), \
                 h AS (UPDATE ems_holds h SET status = 'confirmed' FROM ems_bookings bk, u \
                     WHERE bk.id = u.booking AND bk.status = 'pending' AND h.id = bk.hold_id \
                     AND h.booking_id = bk.id AND h.status = 'active' AND h.expires_at > u.at \
                     RETURNING u.booking AS confirmed_id, u.at AS confirmed_at), \
                 b AS (UPDATE ems_bookings SET status = 'confirmed', reason = NULL, \
                     updated_at = h.confirmed_at, version = version + 1 FROM h \
                     WHERE ems_bookings.id = h.confirmed_id RETURNING {BOOKING_QUALIFIED}), \
                 t AS (INSERT INTO ems_tickets (id, booking_id, event_id, status, checked_in_at, doc) \
                     SELECT (t->>'id')::uuid, (t->>'booking_id')::uuid, (t->>'event_id')::uuid, \
                         t->>'status', (t->>'checked_in_at')::timestamptz, t \
                     FROM jsonb_array_elements($4) WITH ORDINALITY AS x(t, n) \
                     WHERE (t->>'booking_id')::uuid IN (SELECT id FROM b) ORDER BY n), \
                 o AS (INSERT INTO ems_outbox (occurred_at, doc) \
                     SELECT u.at, u.ev FROM u WHERE u.booking IN (SELECT id FROM b) ORDER BY u.n) \
                 SELECT * FROM b",
                BOOKING_QUALIFIED = BOOKING
                    .split(", ")
                    .map(|c| format!("ems_bookings.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .bind(&ids)
            .bind(&nows)
            .bind(&events)
            .bind(Value::Array(tickets))
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
            for r in rows {
                let b = row::booking(&r)?;
                confirmed.insert(b.id, b);
            }
        }
        commit(tx).await?;

        let mut steps = Vec::with_capacity(batch.len());
        for r in batch {
            let step = if let Some(b) = confirmed.remove(&r.booking.id) {
                Step::Done(Settled {
                    payment: r.payment.clone(),
                    outcome: ConfirmOutcome::Confirmed(b),
                })
            } else if moved.contains(&r.payment.id.0) {
                // Paid, but the hold lapsed or ended: the careful path decides.
                Step::Done(Settled {
                    payment: r.payment.clone(),
                    outcome: self.confirm_booking(&r.confirm).await?,
                })
            } else {
                Step::Alone
            };
            steps.push(step);
        }
        Ok(steps)
    }
}

#[async_trait]
impl CheckoutStore for PostgresStore {
    async fn open_checkouts(&self, batch: &[OpenCheckout]) -> Vec<Result<Opened>> {
        let steps = match batch.len() {
            0 => return Vec::new(),
            1 => vec![Step::Alone],
            _ => match self.open_batch(batch).await {
                Ok(steps) => steps,
                Err(e) => return batch.iter().map(|_| Err(e.replica())).collect(),
            },
        };
        let mut out = Vec::with_capacity(batch.len());
        for (r, step) in batch.iter().zip(steps) {
            out.push(match step {
                Step::Done(o) => Ok(o),
                Step::Alone => open_one(self, r).await,
            });
        }
        out
    }

    async fn settle_paid(&self, batch: &[SettlePaid]) -> Vec<Result<Settled>> {
        let steps = match batch.len() {
            0 => return Vec::new(),
            1 => vec![Step::Alone],
            _ => match self.settle_batch(batch).await {
                Ok(steps) => steps,
                Err(e) => return batch.iter().map(|_| Err(e.replica())).collect(),
            },
        };
        let mut out = Vec::with_capacity(batch.len());
        for (r, step) in batch.iter().zip(steps) {
            out.push(match step {
                Step::Done(s) => Ok(s),
                Step::Alone => settle_one(self, r).await,
            });
        }
        out
    }
}

/// Booking rows as column arrays, for `unnest`.
#[derive(Default)]
struct BookingColumns {
    id: Vec<Uuid>,
    event: Vec<Uuid>,
    customer: Vec<Uuid>,
    hold: Vec<Uuid>,
    key: Vec<String>,
    status: Vec<String>,
    reason: Vec<Option<Value>>,
    total: Vec<Decimal>,
    currency: Vec<String>,
    created: Vec<DateTime<Utc>>,
    updated: Vec<DateTime<Utc>>,
    version: Vec<i64>,
    doc: Vec<Value>,
    event_doc: Vec<Value>,
}

impl BookingColumns {
    fn push(&mut self, request: &OpenCheckout) -> Result<()> {
        let b = &request.booking;
        self.id.push(b.id.0);
        self.event.push(b.event_id.0);
        self.customer.push(b.customer.0);
        self.hold.push(b.hold_id.0);
        self.key.push(b.idempotency_key.clone());
        self.status.push(tag(&b.status));
        self.reason.push(b.reason.as_ref().map(json).transpose()?);
        self.total.push(b.total.amount());
        self.currency.push(b.total.currency().code().to_owned());
        self.created.push(b.created_at);
        self.updated.push(b.updated_at);
        self.version.push(b.version as i64);
        self.doc.push(json(b)?);
        self.event_doc.push(json(&DomainEvent::BookingCreated {
            event_id: b.event_id,
            booking_id: b.id,
            customer: b.customer,
        })?);
        Ok(())
    }
}

/// Payment rows as column arrays, for `unnest`.
#[derive(Default)]
struct PaymentColumns {
    id: Vec<Uuid>,
    booking: Vec<Uuid>,
    event: Vec<Uuid>,
    gateway: Vec<String>,
    reference: Vec<Option<String>>,
    amount: Vec<Decimal>,
    refunded: Vec<Decimal>,
    currency: Vec<String>,
    status: Vec<String>,
    key: Vec<String>,
    version: Vec<i64>,
    doc: Vec<Value>,
    at: Vec<DateTime<Utc>>,
    updated: Vec<DateTime<Utc>>,
    /// `PaymentStarted`, for a new record.
    event_doc: Vec<Value>,
    /// The status change's event, for an updated record.
    change_doc: Vec<Option<Value>>,
}

impl PaymentColumns {
    fn push(&mut self, p: &Payment) -> Result<()> {
        self.id.push(p.id.0);
        self.booking.push(p.booking_id.0);
        self.event.push(p.event_id.0);
        self.gateway.push(p.gateway.clone());
        self.reference.push(p.reference.clone());
        self.amount.push(p.amount.amount());
        self.refunded.push(p.refunded.amount());
        self.currency.push(p.amount.currency().code().to_owned());
        self.status.push(tag(&p.status));
        self.key.push(p.idempotency_key.clone());
        self.version.push(p.version as i64);
        self.doc.push(json(p)?);
        self.at.push(p.created_at);
        self.updated.push(p.updated_at);
        self.event_doc.push(json(&DomainEvent::PaymentStarted {
            booking_id: p.booking_id,
            payment_id: p.id,
            amount: p.amount,
        })?);
        let before = Payment {
            status: PaymentStatus::Pending,
            ..p.clone()
        };
        self.change_doc.push(
            payment_change_event(&before, p)
                .as_ref()
                .map(json)
                .transpose()?,
        );
        Ok(())
    }
}
