use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ems_core::booking::*;
use ems_core::id::{BookingId, EventId, UserId};
use ems_core::inventory::{check_capacity, demand_of, HoldStatus};
use ems_core::outbox::DomainEvent;
use ems_core::payment::check_refundable;
use ems_core::ticket::Ticket;
use ems_core::{Error, Result};
use sqlx::Row;
use uuid::Uuid;

use crate::inventory::{apply_demand, coupon_uses, end_holds, lock_existing, read_hold};
use crate::payment::{insert_refund_row, lock_payment, refunds_of_booking};
use crate::row::{self, begin, commit, json, json_text, record, tag, Tx, BOOKING};
use crate::{db, PostgresStore};

/// Reads a booking, optionally locking its row.
async fn read_booking<'e, E>(executor: E, id: BookingId, lock: bool) -> Result<Option<Booking>>
where
    E: sqlx::PgExecutor<'e>,
{
    let sql = format!(
        "SELECT {BOOKING} FROM ems_bookings WHERE id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    sqlx::query(&sql)
        .bind(id.0)
        .fetch_optional(executor)
        .await
        .map_err(db)?
        .as_ref()
        .map(row::booking)
        .transpose()
}

/// Stores a booking's new state (status, reason, when) and bumps its version.
async fn set_state(
    tx: &mut Tx,
    booking: &mut Booking,
    status: BookingStatus,
    reason: Option<BookingReason>,
    now: DateTime<Utc>,
) -> Result<()> {
    let reason_json = reason.as_ref().map(json).transpose()?;
    sqlx::query(
        "UPDATE ems_bookings SET status = $2, reason = $3, updated_at = $4, version = version + 1 \
         WHERE id = $1",
    )
    .bind(booking.id.0)
    .bind(tag(&status))
    .bind(reason_json)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    booking.status = status;
    booking.reason = reason;
    booking.updated_at = now;
    booking.version += 1;
    Ok(())
}

/// Stores a confirmed booking's tickets.
async fn insert_tickets(tx: &mut Tx, tickets: &[Ticket]) -> Result<()> {
    let docs = json(tickets)?;
    sqlx::query(
        "INSERT INTO ems_tickets (id, booking_id, event_id, status, checked_in_at, doc) \
         SELECT (t->>'id')::uuid, (t->>'booking_id')::uuid, (t->>'event_id')::uuid, t->>'status', \
                (t->>'checked_in_at')::timestamptz, t \
         FROM jsonb_array_elements($1) WITH ORDINALITY AS x(t, n) ORDER BY n",
    )
    .bind(docs)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

pub(crate) fn check_tickets(booking: &Booking, tickets: &[Ticket]) -> Result<()> {
    let expected = booking.quantity();
    if tickets.len() != expected as usize
        || tickets
            .iter()
            .any(|t| t.booking_id != booking.id || t.event_id != booking.event_id)
    {
        return Err(Error::invalid(
            "tickets",
            format!("one ticket per unit of booking {} ({expected})", booking.id),
        ));
    }
    Ok(())
}

/// Confirms `booking` (state checked by the caller) with its tickets.
async fn confirm_now(
    tx: &mut Tx,
    mut booking: Booking,
    reason: Option<BookingReason>,
    request: &ConfirmBooking,
) -> Result<ConfirmOutcome> {
    insert_tickets(tx, &request.tickets).await?;
    set_state(
        tx,
        &mut booking,
        BookingStatus::Confirmed,
        reason,
        request.now,
    )
    .await?;
    record(
        tx,
        request.now,
        [DomainEvent::BookingConfirmed {
            event_id: booking.event_id,
            booking_id: booking.id,
            customer: booking.customer,
            tickets: booking.quantity(),
        }],
    )
    .await?;
    Ok(ConfirmOutcome::Confirmed(booking))
}

impl PostgresStore {
    /// Bookings whose `column` is `value`, newest first, strictly before `before`.
    async fn bookings_page(
        &self,
        column: &'static str,
        value: Uuid,
        before: Option<BookingId>,
        limit: u32,
    ) -> Result<Vec<Booking>> {
        sqlx::query(&format!(
            "SELECT {BOOKING} FROM ems_bookings WHERE {column} = $1 \
             AND ($2::uuid IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        ))
        .bind(value)
        .bind(before.map(|b| b.0))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .iter()
        .map(row::booking)
        .collect()
    }
}

#[async_trait]
impl BookingStore for PostgresStore {
    async fn create_booking(&self, booking: &Booking) -> Result<Booking> {
        if let Some(existing) = self
            .booking_by_key(booking.customer, &booking.idempotency_key)
            .await?
        {
            return Ok(existing);
        }
        // Looked up (the first time) before the transaction takes a connection.
        let docs = self.docs().await;
        let mut tx = begin(&self.pool).await?;
        // The hold's row lock orders racing bookings of one hold.
        let hold = read_hold(&mut *tx, booking.hold_id, true)
            .await?
            .ok_or_else(|| Error::not_found("hold", booking.hold_id))?;
        if let Err(e) = check_bookable(&hold, booking) {
            if matches!(e, Error::InvalidState { .. }) {
                drop(tx);
                // A racing request with the same key may have booked this very hold.
                if let Some(existing) = self
                    .booking_by_key(booking.customer, &booking.idempotency_key)
                    .await?
                {
                    return Ok(existing);
                }
            }
            return Err(e);
        }
        let created = DomainEvent::BookingCreated {
            event_id: booking.event_id,
            booking_id: booking.id,
            customer: booking.customer,
        };
        // Booking, the hold's link to it and the domain event in one statement.
        let sql = format!(
            "WITH b AS (INSERT INTO ems_bookings (id, event_id, customer, hold_id, idempotency_key, \
                 status, reason, total, currency, created_at, updated_at, version, {doc}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                 ON CONFLICT (customer, idempotency_key) DO NOTHING RETURNING id), \
             h AS (UPDATE ems_holds SET booking_id = b.id FROM b WHERE ems_holds.id = $4), \
             o AS (INSERT INTO ems_outbox (occurred_at, doc) SELECT $10, $14 FROM b) \
             SELECT count(*) FROM b",
            doc = docs.column()
        );
        let inserted: i64 = sqlx::query(&sql)
            .bind(booking.id.0)
            .bind(booking.event_id.0)
            .bind(booking.customer.0)
            .bind(booking.hold_id.0)
            .bind(&booking.idempotency_key)
            .bind(tag(&booking.status))
            .bind(booking.reason.as_ref().map(json).transpose()?)
            .bind(booking.total.amount())
            .bind(booking.total.currency().code())
            .bind(booking.created_at)
            .bind(booking.updated_at)
            .bind(booking.version as i64)
            .bind(json_text(booking)?)
            .bind(json(&created)?)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?
            .try_get(0)
            .map_err(db)?;
        if inserted == 0 {
            drop(tx);
            return self
                .booking_by_key(booking.customer, &booking.idempotency_key)
                .await?
                .ok_or_else(|| Error::not_found("booking", &booking.idempotency_key));
        }
        commit(tx).await?;
        Ok(booking.clone())
    }

    async fn booking(&self, id: BookingId) -> Result<Option<Booking>> {
        read_booking(&self.pool, id, false).await
    }

    async fn booking_by_key(&self, customer: UserId, key: &str) -> Result<Option<Booking>> {
        sqlx::query(&format!(
            "SELECT {BOOKING} FROM ems_bookings WHERE customer = $1 AND idempotency_key = $2"
        ))
        .bind(customer.0)
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .as_ref()
        .map(row::booking)
        .transpose()
    }

    async fn bookings_for_customer(
        &self,
        customer: UserId,
        before: Option<BookingId>,
        limit: u32,
    ) -> Result<Vec<Booking>> {
        self.bookings_page("customer", customer.0, before, limit)
            .await
    }

    async fn bookings_for_event(
        &self,
        event: EventId,
        before: Option<BookingId>,
        limit: u32,
    ) -> Result<Vec<Booking>> {
        self.bookings_page("event_id", event.0, before, limit).await
    }

    async fn confirm_booking(&self, request: &ConfirmBooking) -> Result<ConfirmOutcome> {
        let id = request.booking_id;
        let now = request.now;
        let booking = read_booking(&self.pool, id, false)
            .await?
            .ok_or_else(|| Error::not_found("booking", id))?;
        match booking.status {
            BookingStatus::Confirmed => return Ok(ConfirmOutcome::AlreadyConfirmed(booking)),
            BookingStatus::Cancelled | BookingStatus::Unfulfilled => {
                return Ok(ConfirmOutcome::Unfulfilled(booking))
            }
            _ => {}
        }
        check_tickets(&booking, &request.tickets)?;

        // Fast path: the hold is still active, so confirming touches only the hold,
        // the booking and the tickets, never the event's counters. The hold's row
        // decides races with expiry and release.
        let confirmed_event = DomainEvent::BookingConfirmed {
            event_id: booking.event_id,
            booking_id: id,
            customer: booking.customer,
            tickets: booking.quantity(),
        };
        let tickets = json(&request.tickets)?;
        let row = sqlx::query(&format!(
            "WITH h AS (UPDATE ems_holds SET status = 'confirmed' \
                 WHERE id = $2 AND status = 'active' AND expires_at > $3 AND booking_id = $1 \
                 AND EXISTS (SELECT 1 FROM ems_bookings WHERE id = $1 AND status = 'pending') RETURNING id), \
             b AS (UPDATE ems_bookings SET status = 'confirmed', reason = NULL, updated_at = $3, \
                 version = version + 1 WHERE id = $1 AND status = 'pending' AND EXISTS (SELECT 1 FROM h) \
                 RETURNING {BOOKING}), \
             t AS (INSERT INTO ems_tickets (id, booking_id, event_id, status, checked_in_at, doc) \
                 SELECT (t->>'id')::uuid, (t->>'booking_id')::uuid, (t->>'event_id')::uuid, t->>'status', \
                        (t->>'checked_in_at')::timestamptz, t \
                 FROM jsonb_array_elements($4) WITH ORDINALITY AS x(t, n) \
                 WHERE EXISTS (SELECT 1 FROM b) ORDER BY n), \
             o AS (INSERT INTO ems_outbox (occurred_at, doc) SELECT $3, $5 FROM b) \
             SELECT * FROM b"
        ))
        .bind(id.0)
        .bind(booking.hold_id.0)
        .bind(now)
        .bind(tickets)
        .bind(json(&confirmed_event)?)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        if let Some(row) = row {
            return Ok(ConfirmOutcome::Confirmed(row::booking(&row)?));
        }

        // Careful path: the hold lapsed or ended; take the units again if they fit.
        let mut tx = begin(&self.pool).await?;
        let mut s = lock_existing(&mut tx, booking.event_id, now).await?;
        let booking = read_booking(&mut *tx, id, true)
            .await?
            .ok_or_else(|| Error::not_found("booking", id))?;
        match booking.status {
            BookingStatus::Confirmed => return Ok(ConfirmOutcome::AlreadyConfirmed(booking)),
            BookingStatus::Cancelled | BookingStatus::Unfulfilled => {
                return Ok(ConfirmOutcome::Unfulfilled(booking))
            }
            _ => {}
        }
        let hold = read_hold(&mut *tx, booking.hold_id, true).await?;
        let hold_active = hold
            .as_ref()
            .is_some_and(|h| h.status == HoldStatus::Active && h.expires_at > now);
        let reason = if hold_active {
            None
        } else if s.event.status.is_final() {
            Some(Err(BookingReason::EventCancelled))
        } else {
            let demand = demand_of(&s.tiers, &booking.lines);
            match check_capacity(&demand, |k| s.available(k)) {
                Ok(()) => {
                    apply_demand(&mut tx, &mut s, &demand, 1).await?;
                    // The lapsed hold gave its coupon use back; the payment was made
                    // with the discount, so the use counts again.
                    if let Some(coupon) = hold.as_ref().and_then(|h| h.coupon) {
                        coupon_uses(&mut tx, &[(coupon, booking.customer)], true).await?;
                    }
                    Some(Ok(BookingReason::Reacquired))
                }
                Err(_) => Some(Err(BookingReason::SoldOutAfterExpiry)),
            }
        };
        let outcome = match reason {
            None | Some(Ok(_)) => {
                if hold.is_some() {
                    sqlx::query("UPDATE ems_holds SET status = 'confirmed' WHERE id = $1")
                        .bind(booking.hold_id.0)
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                }
                confirm_now(&mut tx, booking, reason.and_then(|r| r.ok()), request).await?
            }
            Some(Err(why)) => {
                let mut booking = booking;
                set_state(
                    &mut tx,
                    &mut booking,
                    BookingStatus::Unfulfilled,
                    Some(why.clone()),
                    now,
                )
                .await?;
                record(
                    &mut tx,
                    now,
                    [DomainEvent::BookingUnfulfilled {
                        event_id: booking.event_id,
                        booking_id: id,
                        reason: why,
                    }],
                )
                .await?;
                ConfirmOutcome::Unfulfilled(booking)
            }
        };
        commit(tx).await?;
        Ok(outcome)
    }

    async fn fail_booking(
        &self,
        id: BookingId,
        reason: BookingReason,
        now: DateTime<Utc>,
    ) -> Result<Booking> {
        let booking = read_booking(&self.pool, id, false)
            .await?
            .ok_or_else(|| Error::not_found("booking", id))?;
        match booking.status {
            BookingStatus::Failed | BookingStatus::Expired => return Ok(booking),
            BookingStatus::Pending => {}
            other => return Err(Error::invalid_state("booking", id, other, "fail")),
        }
        let mut tx = begin(&self.pool).await?;
        let mut s = lock_existing(&mut tx, booking.event_id, now).await?;
        let hold = read_hold(&mut *tx, booking.hold_id, true).await?;
        let mut out = Vec::new();
        if let Some(hold) = hold {
            out = end_holds(&mut tx, &mut s, vec![hold], HoldStatus::Released, None, now).await?;
        }
        let mut booking = read_booking(&mut *tx, id, true)
            .await?
            .ok_or_else(|| Error::not_found("booking", id))?;
        match booking.status {
            BookingStatus::Pending => {
                set_state(
                    &mut tx,
                    &mut booking,
                    BookingStatus::Failed,
                    Some(reason.clone()),
                    now,
                )
                .await?;
                out.push(DomainEvent::BookingFailed {
                    event_id: booking.event_id,
                    booking_id: id,
                    reason,
                });
            }
            BookingStatus::Failed | BookingStatus::Expired => {}
            other => return Err(Error::invalid_state("booking", id, other, "fail")),
        }
        record(&mut tx, now, out).await?;
        commit(tx).await?;
        Ok(booking)
    }

    async fn cancel_booking(&self, request: &CancelBooking) -> Result<Booking> {
        let id = request.booking_id;
        let event = read_booking(&self.pool, id, false)
            .await?
            .ok_or_else(|| Error::not_found("booking", id))?
            .event_id;
        let mut tx = begin(&self.pool).await?;
        let mut s = lock_existing(&mut tx, event, request.now).await?;
        let mut booking = read_booking(&mut *tx, id, true)
            .await?
            .ok_or_else(|| Error::not_found("booking", id))?;
        match booking.status {
            BookingStatus::Cancelled => return Ok(booking),
            BookingStatus::Confirmed => {}
            other => return Err(Error::invalid_state("booking", id, other, "cancel")),
        }
        let checked_in: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM ems_tickets WHERE booking_id = $1 AND checked_in_at IS NOT NULL)",
        )
        .bind(id.0)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        check_cancel(request, checked_in)?;
        if let Some(r) = &request.refund {
            let payment = lock_payment(&mut tx, r.payment_id).await?;
            let others = refunds_of_booking(&mut *tx, id).await?;
            check_refundable(&payment, r, &others)?;
        }
        sqlx::query("UPDATE ems_tickets SET status = 'void' WHERE booking_id = $1")
            .bind(id.0)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let demand = demand_of(&s.tiers, &booking.lines);
        apply_demand(&mut tx, &mut s, &demand, -1).await?;
        sqlx::query("UPDATE ems_holds SET status = 'released' WHERE id = $1")
            .bind(booking.hold_id.0)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        set_state(
            &mut tx,
            &mut booking,
            BookingStatus::Cancelled,
            Some(request.reason.clone()),
            request.now,
        )
        .await?;
        let mut out = vec![DomainEvent::BookingCancelled {
            event_id: booking.event_id,
            booking_id: id,
            reason: request.reason.clone(),
        }];
        if let Some(r) = &request.refund {
            insert_refund_row(&mut tx, r).await?;
            out.push(DomainEvent::RefundRequested {
                booking_id: id,
                refund_id: r.id,
                amount: r.amount,
            });
        }
        record(&mut tx, request.now, out).await?;
        commit(tx).await?;
        Ok(booking)
    }
}
