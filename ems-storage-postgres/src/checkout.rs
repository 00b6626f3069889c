//! The checkout steps after the hold, a whole batch per transaction.
//!
//! A batch of openings is one statement (lock the holds; insert the bookings
//! their holds take, link the holds, insert the payment records, record
//! `BookingCreated` and `PaymentStarted`), and so is a batch of settlements
//! (move the payments to succeeded; confirm the bookings whose holds are still
//! active, with their tickets; record the events): one statement, prepared
//! once per connection, and one commit for any number of buyers. Requests the
//! batch statements cannot decide alone (a hold that lapsed, a reused key, a
//! payment someone else moved) are finished after the commit by the single-step
//! operations, which give exactly the answer they would have given alone.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ems_core::booking::{
    hold_then_open, open_one, settle_one, BookingStore, CheckoutStore, ConfirmOutcome,
    HeldAndOpened, HoldAndOpen, OpenCheckout, Opened, SettlePaid, Settled,
};
use ems_core::outbox::DomainEvent;
use ems_core::payment::{payment_change_event, Payment, PaymentStatus, PaymentStore};
use ems_core::ticket::Ticket;
use ems_core::Result;
use rust_decimal::Decimal;
use sqlx::Row;
use uuid::Uuid;

use crate::batch_fn::BatchStatement;
use crate::booking::check_tickets;
use crate::inventory::hold_and_open_on_known;
use crate::row::{self, json, json_text, tag, Docs, JsonText, Jsonb, PerDocs, BOOKING};
use crate::{db, PostgresStore};

/// The answer of a request decided by the batch (after its commit, a request's
/// own follow-up may still fail it alone), or the request to finish alone.
enum Step<T> {
    Done(Result<T>),
    Alone,
}

impl PostgresStore {
    async fn open_batch(&self, batch: &[OpenCheckout]) -> Result<Vec<Step<Opened>>> {
        // Requests the statement may decide: no earlier request of the batch
        // names the same hold or key (those run alone after the batch, in
        // order, and must see the earlier ones first).
        let mut holds_seen = HashSet::new();
        let mut keys_seen = HashSet::new();
        let chosen: Vec<&OpenCheckout> = batch
            .iter()
            .filter(|r| {
                let fresh_hold = holds_seen.insert(r.booking.hold_id);
                let fresh_key =
                    keys_seen.insert((r.booking.customer, r.booking.idempotency_key.as_str()));
                fresh_hold
                    && fresh_key
                    && r.payment.booking_id == r.booking.id
                    && r.payment.event_id == r.booking.event_id
            })
            .collect();
        let mut bookings = BookingColumns::default();
        let mut payments = PaymentColumns::default();
        for r in &chosen {
            bookings.push(r)?;
            payments.push(&r.payment)?;
        }
        // One statement in a transaction of its own: lock the holds; insert
        // the bookings whose hold takes them (active and unexpired at the
        // booking's creation, unbooked, the same customer, event, lines and
        // total) unless the key names a booking already; link the holds;
        // insert the payment records; record the domain events in request
        // order. The payments' foreign keys are checked at the end of the
        // statement, when the bookings are there.
        let rows = self
            .run_batch(BatchStatement::Open, |q| payments.bind(bookings.bind(q)))
            .await?;
        let mut inserted = HashSet::new();
        let mut paid = HashSet::new();
        for r in rows {
            let id: Uuid = r.try_get(0).map_err(db)?;
            if r.try_get::<bool, _>(1).map_err(db)? {
                paid.insert(id);
            } else {
                inserted.insert(id);
            }
        }

        let mut steps = Vec::with_capacity(batch.len());
        for r in batch {
            let step = if inserted.contains(&r.booking.id.0) {
                Step::Done(self.opened(r, &paid).await)
            } else {
                Step::Alone
            };
            steps.push(step);
        }
        Ok(steps)
    }

    /// The answer to `opening`, whose booking a batch statement inserted
    /// along with the payment records in `paid`.
    async fn opened(&self, opening: &OpenCheckout, paid: &HashSet<Uuid>) -> Result<Opened> {
        if paid.contains(&opening.payment.id.0) {
            return Ok(Opened::Created { payment: None });
        }
        // The key named a payment already: it answers.
        let stored = self.insert_payment(&opening.payment).await?;
        Ok(Opened::created(&opening.payment, stored))
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
        let mut payments = PaymentColumns::default();
        let mut nows: Vec<DateTime<Utc>> = Vec::with_capacity(chosen.len());
        let mut confirmed_events: Vec<Jsonb> = Vec::with_capacity(chosen.len());
        let mut tickets: Vec<&Ticket> = Vec::new();
        for r in &chosen {
            payments.push(&r.payment)?;
            nows.push(r.confirm.now);
            confirmed_events.push(json(&DomainEvent::BookingConfirmed {
                event_id: r.booking.event_id,
                booking_id: r.booking.id,
                customer: r.booking.customer,
                tickets: r.booking.quantity(),
            })?);
            tickets.extend(&r.confirm.tickets);
        }
        // One statement: move the payments that are still pending at the
        // expected version to succeeded; for those, confirm the bookings still
        // pending on an active, unexpired hold of their own (the hold's row
        // decides races with expiry), with their tickets; record the events in
        // request order. Each payment moves whether or not its booking is
        // confirmed here (the careful path finishes those after).
        let tickets = json(&tickets)?;
        let rows = self
            .run_batch(BatchStatement::Settle, |q| {
                q.bind(&payments.id)
                    .bind(&payments.reference)
                    .bind(&payments.refunded)
                    .bind(&payments.status)
                    .bind(&payments.version)
                    .bind(&payments.doc)
                    .bind(&payments.change_doc)
                    .bind(&payments.booking)
                    .bind(&nows)
                    .bind(&confirmed_events)
                    .bind(&tickets)
                    .bind("active")
            })
            .await?;
        let mut moved = HashSet::new();
        let mut confirmed = HashMap::new();
        for r in rows {
            if r.try_get::<bool, _>("moved_only").map_err(db)? {
                moved.insert(r.try_get::<Uuid, _>("id").map_err(db)?);
            } else {
                let b = row::booking(&r)?;
                confirmed.insert(b.id, b);
            }
        }

        let mut steps = Vec::with_capacity(batch.len());
        for r in batch {
            let step = if let Some(b) = confirmed.remove(&r.booking.id) {
                Step::Done(Ok(ConfirmOutcome::Confirmed(b).into()))
            } else if moved.contains(&r.payment.id.0) {
                // Paid, but the hold lapsed or ended: the careful path decides.
                Step::Done(self.confirm_booking(&r.confirm).await.map(Settled::from))
            } else {
                Step::Alone
            };
            steps.push(step);
        }
        Ok(steps)
    }
}

/// The statement of a batch of openings (see `open_batch`), built once.
pub(crate) fn open_sql(docs: Docs) -> &'static str {
    static SQL: PerDocs = PerDocs::new();
    SQL.get(docs, |docs| {
        format!(
            "WITH {}, \
             l AS (SELECT id, event_id, customer, status, booking_id, expires_at, total, currency, \
                 COALESCE((body -> 'lines')::jsonb, doc -> 'lines') AS lines \
                 FROM ems_holds WHERE id = ANY($4) ORDER BY id FOR UPDATE), \
             ok AS (SELECT u.* FROM u JOIN l ON l.id = u.hold_id \
                 WHERE l.event_id = u.event_id AND l.customer = u.customer AND l.status = 'active' \
                 AND l.expires_at > u.created_at AND l.booking_id IS NULL AND l.total = u.total \
                 AND l.currency = u.currency AND l.lines = u.lines), \
             b AS (INSERT INTO ems_bookings (id, event_id, customer, hold_id, idempotency_key, \
                 status, reason, total, currency, created_at, updated_at, version, {doc}) \
                 SELECT id, event_id, customer, hold_id, key, status, reason, total, currency, \
                     created_at, updated_at, version, doc FROM ok ORDER BY n \
                 ON CONFLICT (customer, idempotency_key) DO NOTHING RETURNING id, hold_id), \
             h AS (UPDATE ems_holds SET booking_id = b.id FROM b WHERE ems_holds.id = b.hold_id), \
             {}, {}, \
             o AS (INSERT INTO ems_outbox (occurred_at, doc) \
                 SELECT at, ev FROM ( \
                     SELECT u.created_at AS at, u.ev, u.n, 0 AS k FROM u \
                         WHERE u.id IN (SELECT id FROM b) \
                     UNION ALL \
                     SELECT pu.at, pu.ev, pu.n, 1 FROM pu WHERE pu.id IN (SELECT id FROM p)) e \
                 ORDER BY n, k) \
             SELECT id, false AS payment FROM b UNION ALL SELECT id, true FROM p",
            BookingColumns::unnest_cte(1),
            PaymentColumns::unnest_cte(16),
            payments_of_booked(docs),
            doc = docs.column(),
        )
    })
}

/// The statement of a batch of settlements (see `settle_batch`), built once.
///
/// `k` finds the holds to confirm through their bookings, and is
/// materialized so that the plan then looks each hold up by its id; the
/// status they must have (`active`) is a parameter, so that a plan made
/// while the tables are tiny cannot reach them through the partial index of
/// active holds by expiry instead, which reads every active hold of every
/// event for each booking.
pub(crate) fn settle_sql(docs: Docs) -> &'static str {
    static SQL: PerDocs = PerDocs::new();
    SQL.get(docs, |docs| {
        format!(
            "WITH u AS (SELECT * FROM unnest($1::uuid[], $2::text[], $3::numeric[], \
                 $4::text[], $5::int8[], $6::json[], $7::jsonb[], $8::uuid[], \
                 $9::timestamptz[], $10::jsonb[]) \
                 WITH ORDINALITY AS u(id, reference, refunded, status, version, doc, change, \
                 booking, at, confirmed, n)), \
             p AS (UPDATE ems_payments p SET reference = u.reference, refunded = u.refunded, \
                 status = u.status, version = u.version, {set_doc} FROM u \
                 WHERE p.id = u.id AND p.version = u.version - 1 AND p.status = 'pending' \
                 RETURNING p.id), \
             k AS MATERIALIZED (SELECT bk.hold_id, u.booking, u.at FROM u \
                 JOIN ems_bookings bk ON bk.id = u.booking \
                 WHERE u.id IN (SELECT id FROM p) AND bk.status = 'pending'), \
             h AS (UPDATE ems_holds h SET status = 'confirmed' FROM k \
                 WHERE h.id = k.hold_id AND h.booking_id = k.booking AND h.status = $12 \
                 AND h.expires_at > k.at \
                 RETURNING k.booking AS confirmed_id, k.at AS confirmed_at), \
             b AS (UPDATE ems_bookings SET status = 'confirmed', reason = NULL, \
                 updated_at = h.confirmed_at, version = version + 1 FROM h \
                 WHERE ems_bookings.id = h.confirmed_id RETURNING {BOOKING_QUALIFIED}), \
             t AS (INSERT INTO ems_tickets (id, booking_id, event_id, status, checked_in_at, doc) \
                 SELECT (t->>'id')::uuid, (t->>'booking_id')::uuid, (t->>'event_id')::uuid, \
                     t->>'status', (t->>'checked_in_at')::timestamptz, t \
                 FROM jsonb_array_elements($11) WITH ORDINALITY AS x(t, n) \
                 WHERE (t->>'booking_id')::uuid IN (SELECT id FROM b) ORDER BY n), \
             o AS (INSERT INTO ems_outbox (occurred_at, doc) \
                 SELECT at, ev FROM ( \
                     SELECT u.at, u.change AS ev, u.n, 0 AS k FROM u \
                         WHERE u.id IN (SELECT id FROM p) AND u.change IS NOT NULL \
                     UNION ALL \
                     SELECT u.at, u.confirmed, u.n, 1 FROM u WHERE u.booking IN (SELECT id FROM b)) e \
                 ORDER BY n, k) \
             SELECT {BOOKING}, false AS moved_only FROM b \
             UNION ALL SELECT p.id, NULL, NULL, NULL, NULL, NULL, NULL, true FROM p",
            BOOKING_QUALIFIED = BOOKING
                .split(", ")
                .map(|c| format!("ems_bookings.{c}"))
                .collect::<Vec<_>>()
                .join(", "),
            set_doc = docs.set("u.doc"),
        )
    })
}

/// A batch request that can also run alone, through the single-step
/// operations.
#[async_trait]
trait Single: Sync {
    type Answer: Send;
    async fn alone(&self, store: &PostgresStore) -> Result<Self::Answer>;
}

#[async_trait]
impl Single for OpenCheckout {
    type Answer = Opened;
    async fn alone(&self, store: &PostgresStore) -> Result<Opened> {
        open_one(store, self).await
    }
}

#[async_trait]
impl Single for SettlePaid {
    type Answer = Settled;
    async fn alone(&self, store: &PostgresStore) -> Result<Settled> {
        settle_one(store, self).await
    }
}

impl PostgresStore {
    /// A batch's answers in request order: each request the batch decided gets
    /// its answer, the others run alone, in order; a batch that failed as a
    /// whole gives every request its error (nothing was written).
    async fn answer<R: Single>(
        &self,
        batch: &[R],
        decided: Result<Vec<Step<R::Answer>>>,
    ) -> Vec<Result<R::Answer>> {
        let steps = match decided {
            Ok(steps) => steps,
            Err(e) => return batch.iter().map(|_| Err(e.replica())).collect(),
        };
        let mut out = Vec::with_capacity(batch.len());
        for (r, step) in batch.iter().zip(steps) {
            out.push(match step {
                Step::Done(answer) => answer,
                Step::Alone => r.alone(self).await,
            });
        }
        out
    }
}

#[async_trait]
impl CheckoutStore for PostgresStore {
    async fn open_checkouts(&self, batch: &[OpenCheckout]) -> Vec<Result<Opened>> {
        if batch.is_empty() {
            return Vec::new();
        }
        let decided = self.open_batch(batch).await;
        self.answer(batch, decided).await
    }

    async fn settle_paid(&self, batch: &[SettlePaid]) -> Vec<Result<Settled>> {
        if batch.is_empty() {
            return Vec::new();
        }
        let decided = self.settle_batch(batch).await;
        self.answer(batch, decided).await
    }

    async fn hold_and_open(&self, batch: &[HoldAndOpen]) -> Vec<Result<HeldAndOpened>> {
        let Some(held) = hold_and_open_on_known(self, batch).await else {
            return hold_then_open(self, batch).await;
        };
        let mut out = Vec::with_capacity(batch.len());
        for planned in held.planned {
            out.push(match planned {
                Err(e) => Err(e),
                Ok(i) => {
                    let opening = &held.openings[i];
                    let opened = if held.booked.contains(&opening.booking.id.0) {
                        self.opened(opening, &held.paid).await
                    } else {
                        // The key named a booking already (the hold carries
                        // none): the single step answers with it.
                        open_one(self, opening).await
                    };
                    Ok(HeldAndOpened {
                        hold: held.holds[i].clone(),
                        opened: Some(opened),
                    })
                }
            });
        }
        out
    }

    fn opens_with_holds(&self) -> bool {
        self.open_with_holds
    }
}

/// The CTE `p` inserting the payment records of `pu` whose booking `b`
/// inserted, returning their ids.
pub(crate) fn payments_of_booked(docs: Docs) -> String {
    format!(
        "p AS (INSERT INTO ems_payments (id, booking_id, event_id, gateway, reference, amount, \
             refunded, currency, status, idempotency_key, version, {doc}) \
             SELECT id, booking_id, event_id, gateway, reference, amount, refunded, currency, \
                 status, key, version, doc FROM pu WHERE booking_id IN (SELECT id FROM b) \
             ORDER BY n ON CONFLICT (idempotency_key) DO NOTHING RETURNING id)",
        doc = docs.column()
    )
}

/// Booking rows as column arrays, for `unnest`.
#[derive(Default)]
pub(crate) struct BookingColumns {
    id: Vec<Uuid>,
    event: Vec<Uuid>,
    customer: Vec<Uuid>,
    hold: Vec<Uuid>,
    key: Vec<String>,
    status: Vec<String>,
    reason: Vec<Option<Jsonb>>,
    total: Vec<Decimal>,
    currency: Vec<String>,
    created: Vec<DateTime<Utc>>,
    updated: Vec<DateTime<Utc>>,
    version: Vec<i64>,
    doc: Vec<JsonText>,
    lines: Vec<Jsonb>,
    event_doc: Vec<Jsonb>,
}

impl BookingColumns {
    /// The CTE `u` of these columns bound from `$first` on (15 arrays, in
    /// [`BookingColumns::bind`]'s order), numbered `n` from 1.
    pub(crate) fn unnest_cte(first: usize) -> String {
        let types = [
            "uuid",
            "uuid",
            "uuid",
            "uuid",
            "text",
            "text",
            "jsonb",
            "numeric",
            "text",
            "timestamptz",
            "timestamptz",
            "int8",
            "json",
            "jsonb",
            "jsonb",
        ];
        format!(
            "u AS (SELECT * FROM unnest({}) WITH ORDINALITY AS u(id, event_id, customer, hold_id, \
             key, status, reason, total, currency, created_at, updated_at, version, doc, lines, \
             ev, n))",
            params(first, &types)
        )
    }

    pub(crate) fn push(&mut self, request: &OpenCheckout) -> Result<()> {
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
        self.doc.push(json_text(b)?);
        self.lines.push(json(&b.lines)?);
        self.event_doc.push(json(&DomainEvent::BookingCreated {
            event_id: b.event_id,
            booking_id: b.id,
            customer: b.customer,
        })?);
        Ok(())
    }
}

/// `$first::types[0][], $first+1::types[1][], …`.
fn params(first: usize, types: &[&str]) -> String {
    types
        .iter()
        .enumerate()
        .map(|(i, t)| format!("${}::{t}[]", first + i))
        .collect::<Vec<_>>()
        .join(", ")
}

impl BookingColumns {
    /// `q` with these arrays bound next, in [`BookingColumns::unnest_cte`]'s
    /// order.
    pub(crate) fn bind<'q>(
        &'q self,
        q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        q.bind(&self.id)
            .bind(&self.event)
            .bind(&self.customer)
            .bind(&self.hold)
            .bind(&self.key)
            .bind(&self.status)
            .bind(&self.reason)
            .bind(&self.total)
            .bind(&self.currency)
            .bind(&self.created)
            .bind(&self.updated)
            .bind(&self.version)
            .bind(&self.doc)
            .bind(&self.lines)
            .bind(&self.event_doc)
    }
}

/// Payment rows as column arrays, for `unnest`.
#[derive(Default)]
pub(crate) struct PaymentColumns {
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
    doc: Vec<JsonText>,
    at: Vec<DateTime<Utc>>,
    updated: Vec<DateTime<Utc>>,
    /// `PaymentStarted`, for a new record.
    event_doc: Vec<Jsonb>,
    /// The status change's event, for an updated record.
    change_doc: Vec<Option<Jsonb>>,
}

impl PaymentColumns {
    /// `q` with the 14 arrays of [`PaymentColumns::unnest_cte`] bound next.
    pub(crate) fn bind<'q>(
        &'q self,
        q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        q.bind(&self.id)
            .bind(&self.booking)
            .bind(&self.event)
            .bind(&self.gateway)
            .bind(&self.reference)
            .bind(&self.amount)
            .bind(&self.refunded)
            .bind(&self.currency)
            .bind(&self.status)
            .bind(&self.key)
            .bind(&self.version)
            .bind(&self.doc)
            .bind(&self.at)
            .bind(&self.event_doc)
    }
}

impl PaymentColumns {
    /// The CTE `pu` of new payment records bound from `$first` on (14 arrays,
    /// in [`PaymentColumns::bind`]'s order), numbered `n` from 1.
    pub(crate) fn unnest_cte(first: usize) -> String {
        let types = [
            "uuid",
            "uuid",
            "uuid",
            "text",
            "text",
            "numeric",
            "numeric",
            "text",
            "text",
            "text",
            "int8",
            "json",
            "timestamptz",
            "jsonb",
        ];
        format!(
            "pu AS (SELECT * FROM unnest({}) WITH ORDINALITY AS x(id, booking_id, event_id, \
             gateway, reference, amount, refunded, currency, status, key, version, doc, at, ev, n))",
            params(first, &types)
        )
    }

    pub(crate) fn push(&mut self, p: &Payment) -> Result<()> {
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
        self.doc.push(json_text(p)?);
        self.at.push(p.created_at);
        self.updated.push(p.updated_at);
        self.event_doc.push(json(&DomainEvent::PaymentStarted {
            booking_id: p.booking_id,
            payment_id: p.id,
            amount: p.amount,
        })?);
        self.change_doc.push(
            payment_change_event(PaymentStatus::Pending, p)
                .as_ref()
                .map(json)
                .transpose()?,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use sqlx::Connection;

    use super::*;
    use crate::batch_fn::BEGIN_INDEXED;
    use crate::testing::fresh_store;

    /// One node of a plan.
    #[derive(Debug)]
    struct Scan {
        kind: String,
        table: String,
        condition: String,
    }

    /// The nodes of the plan PostgreSQL keeps for `sql` once it stops
    /// planning each run (its generic plan), on a new, empty database, in a
    /// transaction begun with `begin`.
    async fn kept_plan(store: &PostgresStore, sql: &str, begin: &str) -> Vec<Scan> {
        let mut conn = store.pool().acquire().await.expect("a connection");
        let mut tx = conn.begin_with(begin.to_owned()).await.expect("begins");
        sqlx::raw_sql("SET LOCAL plan_cache_mode = force_generic_plan")
            .execute(&mut *tx)
            .await
            .expect("sets");
        sqlx::raw_sql(&format!("PREPARE probe AS {sql}"))
            .execute(&mut *tx)
            .await
            .expect("prepares");
        let params: i32 = sqlx::query_scalar(
            "SELECT cardinality(parameter_types) FROM pg_prepared_statements \
             WHERE name = 'probe'",
        )
        .fetch_one(&mut *tx)
        .await
        .expect("the prepared statement");
        let nulls = vec!["NULL"; params as usize].join(", ");
        let plan: Value =
            sqlx::query_scalar(&format!("EXPLAIN (FORMAT JSON) EXECUTE probe({nulls})"))
                .fetch_one(&mut *tx)
                .await
                .expect("explains");
        // Prepared statements outlive transactions.
        sqlx::raw_sql("DEALLOCATE probe")
            .execute(&mut *tx)
            .await
            .expect("deallocates");
        tx.rollback().await.expect("rolls back");
        fn walk(node: &Value, out: &mut Vec<Scan>) {
            let text = |key: &str| node.get(key).and_then(Value::as_str).unwrap_or_default();
            out.push(Scan {
                kind: text("Node Type").to_owned(),
                table: text("Relation Name").to_owned(),
                condition: [text("Index Cond"), text("Recheck Cond")].concat(),
            });
            for child in node
                .get("Plans")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                walk(child, out);
            }
        }
        let mut nodes = Vec::new();
        walk(&plan[0]["Plan"], &mut nodes);
        nodes
    }

    /// The tables the plan reads other than row by row through their ids:
    /// whole, or through an index on another column.
    fn wide_reads(nodes: &[Scan]) -> Vec<&Scan> {
        nodes
            .iter()
            .filter(|n| n.table.starts_with("ems_") && n.kind != "ModifyTable")
            .filter(|n| n.kind == "Seq Scan" || !n.condition.starts_with("(id = "))
            .collect()
    }

    #[tokio::test]
    async fn batch_statements_keep_plans_that_use_the_indexes_on_a_new_database() {
        let store = fresh_store("ems_test", 2)
            .await
            .expect("the PostgreSQL server (DATABASE_URL) is reachable and migrates");
        let docs = store.docs().await;
        for (what, sql) in [
            ("openings", open_sql(docs)),
            ("settlements", settle_sql(docs)),
        ] {
            let kept = kept_plan(&store, sql, BEGIN_INDEXED).await;
            let wide = wide_reads(&kept);
            assert!(
                wide.is_empty(),
                "the kept plan of a batch of {what} reads rows other than by id: {wide:?}"
            );
        }
        // Without the batch's own setting, the same plan reads the (still
        // tiny) payments table whole, and would keep doing so as it grows.
        let plain = kept_plan(&store, settle_sql(docs), "BEGIN").await;
        assert!(
            wide_reads(&plain)
                .iter()
                .any(|n| n.kind == "Seq Scan" && n.table == "ems_payments"),
            "expected a whole-table read of payments without the setting: {plain:?}"
        );
        store.pool().close().await;
    }
}
