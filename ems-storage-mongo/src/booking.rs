use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ems_core::booking::*;
use ems_core::id::{BookingId, EventId, UserId};
use ems_core::inventory::{check_capacity, demand_of, HoldStatus};
use ems_core::outbox::DomainEvent;
use ems_core::payment::check_refundable;
use ems_core::{Error, Result};
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::ClientSession;

use crate::bsonx::{body, date, from_body, money, tag};
use crate::error::is_duplicate;
use crate::inventory::{apply_demand, coupon_uses, end_holds, lock_existing, read_hold};
use crate::outbox::record;
use crate::payment::{insert_refund_doc, read_payment, refunds_of};
use crate::tx::transaction;
use crate::{db, MongoStore};

/// Moves the bookings `filter` selects to `status`/`reason` at `now`, bumping
/// their versions (body and fields alike).
pub(crate) async fn set_states(
    store: &MongoStore,
    s: &mut ClientSession,
    filter: Document,
    status: BookingStatus,
    reason: Option<&BookingReason>,
    now: DateTime<Utc>,
) -> Result<()> {
    let reason = match reason {
        Some(r) => body(r)?,
        None => Bson::Null,
    };
    store
        .col("bookings")
        .update_many(
            filter,
            doc! {
                "$set": {
                    "status": tag(&status),
                    "body.status": tag(&status),
                    "body.reason": reason,
                    "body.updated_at": body(&now)?,
                },
                "$inc": { "version": 1_i64, "body.version": 1_i64 },
            },
        )
        .session(&mut *s)
        .await
        .map_err(db)?;
    Ok(())
}

/// A booking by id, in the transaction or outside it.
pub(crate) async fn read_booking(
    store: &MongoStore,
    s: Option<&mut ClientSession>,
    id: BookingId,
) -> Result<Option<Booking>> {
    store.read_by_id(s, "bookings", "booking", id.0).await
}

async fn set_state(
    store: &MongoStore,
    s: &mut ClientSession,
    booking: &mut Booking,
    status: BookingStatus,
    reason: Option<BookingReason>,
    now: DateTime<Utc>,
) -> Result<()> {
    set_states(
        store,
        s,
        doc! { "_id": store.uid(booking.id.0) },
        status,
        reason.as_ref(),
        now,
    )
    .await?;
    booking.status = status;
    booking.reason = reason;
    booking.updated_at = now;
    booking.version += 1;
    Ok(())
}

fn check_tickets(booking: &Booking, request: &ConfirmBooking) -> Result<()> {
    let expected = booking.quantity();
    if request.tickets.len() != expected as usize
        || request
            .tickets
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

async fn confirm_now(
    store: &MongoStore,
    s: &mut ClientSession,
    mut booking: Booking,
    reason: Option<BookingReason>,
    request: &ConfirmBooking,
) -> Result<ConfirmOutcome> {
    let docs = request
        .tickets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            Ok(doc! {
                "_id": store.uid(t.id.0),
                "booking_id": store.uid(t.booking_id.0),
                "event_id": store.uid(t.event_id.0),
                "seq": i as i64,
                "status": tag(&t.status),
                "body": body(t)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if !docs.is_empty() {
        store
            .col("tickets")
            .insert_many(docs)
            .session(&mut *s)
            .await
            .map_err(db)?;
    }
    set_state(
        store,
        s,
        &mut booking,
        BookingStatus::Confirmed,
        reason,
        request.now,
    )
    .await?;
    record(
        store,
        s,
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

impl MongoStore {
    async fn bookings_page(
        &self,
        field: &str,
        value: Bson,
        before: Option<BookingId>,
        limit: u32,
    ) -> Result<Vec<Booking>> {
        let mut filter = doc! { field: value };
        if let Some(b) = before {
            filter.insert("_id", doc! { "$lt": self.uid(b.0) });
        }
        let docs: Vec<Document> = self
            .col("bookings")
            .find(filter)
            .sort(doc! { "_id": -1 })
            .limit(i64::from(limit))
            .await
            .map_err(db)?
            .try_collect()
            .await
            .map_err(db)?;
        docs.iter().map(|d| from_body("booking", d)).collect()
    }
}

/// Batches run one by one: each step is its own conditional write or transaction.
#[async_trait]
impl CheckoutStore for MongoStore {}

#[async_trait]
impl BookingStore for MongoStore {
    async fn create_booking(&self, booking: &Booking) -> Result<Booking> {
        if let Some(existing) = self
            .booking_by_key(booking.customer, &booking.idempotency_key)
            .await?
        {
            return Ok(existing);
        }
        let created: Result<()> = transaction!(self, |s| {
            let hold = read_hold(self, Some(&mut s), booking.hold_id)
                .await?
                .ok_or_else(|| Error::not_found("hold", booking.hold_id))?;
            check_bookable(&hold, booking)?;
            // Linking the hold first makes racing bookings of one hold conflict.
            let linked = self
                .col("holds")
                .update_one(
                    doc! { "_id": self.uid(booking.hold_id.0), "booked": false },
                    doc! { "$set": {
                        "booked": true,
                        "booking_id": self.uid(booking.id.0),
                        "body.booking_id": body(&booking.id)?,
                    } },
                )
                .session(&mut s)
                .await
                .map_err(db)?;
            let linked = linked.modified_count;
            if linked != 1 {
                return Err(crate::tx::conflict("hold"));
            }
            let inserted = self
                .col("bookings")
                .insert_one(doc! {
                    "_id": self.uid(booking.id.0),
                    "event_id": self.uid(booking.event_id.0),
                    "customer": self.uid(booking.customer.0),
                    "hold_id": self.uid(booking.hold_id.0),
                    "key": &booking.idempotency_key,
                    "status": tag(&booking.status),
                    "total": money(&booking.total)?,
                    "created_at": date(booking.created_at),
                    "version": booking.version as i64,
                    "body": body(booking)?,
                })
                .session(&mut s)
                .await;
            match inserted {
                Err(e) if is_duplicate(&e) => {
                    return Err(Error::already_exists(
                        "booking",
                        "idempotency_key",
                        &booking.idempotency_key,
                    ))
                }
                other => other.map_err(db)?,
            };
            record(
                self,
                &mut s,
                booking.created_at,
                [DomainEvent::BookingCreated {
                    event_id: booking.event_id,
                    booking_id: booking.id,
                    customer: booking.customer,
                }],
            )
            .await
        });
        match created {
            Ok(()) => Ok(booking.clone()),
            // A racing request with the same key won: return its booking.
            Err(e) => match self
                .booking_by_key(booking.customer, &booking.idempotency_key)
                .await?
            {
                Some(existing) => Ok(existing),
                // No booking has the key: the duplicate was the id.
                None => Err(match e {
                    Error::AlreadyExists {
                        entity: "booking", ..
                    } => Error::already_exists("booking", "id", booking.id),
                    e => e,
                }),
            },
        }
    }

    async fn booking(&self, id: BookingId) -> Result<Option<Booking>> {
        read_booking(self, None, id).await
    }

    async fn booking_by_key(&self, customer: UserId, key: &str) -> Result<Option<Booking>> {
        self.col("bookings")
            .find_one(doc! { "customer": self.uid(customer.0), "key": key })
            .await
            .map_err(db)?
            .map(|d| from_body("booking", &d))
            .transpose()
    }

    async fn bookings_for_customer(
        &self,
        customer: UserId,
        before: Option<BookingId>,
        limit: u32,
    ) -> Result<Vec<Booking>> {
        self.bookings_page("customer", self.uid(customer.0), before, limit)
            .await
    }

    async fn bookings_for_event(
        &self,
        event: EventId,
        before: Option<BookingId>,
        limit: u32,
    ) -> Result<Vec<Booking>> {
        self.bookings_page("event_id", self.uid(event.0), before, limit)
            .await
    }

    async fn confirm_booking(&self, request: &ConfirmBooking) -> Result<ConfirmOutcome> {
        let id = request.booking_id;
        let now = request.now;
        let first = read_booking(self, None, id)
            .await?
            .ok_or_else(|| Error::not_found("booking", id))?;
        match first.status {
            BookingStatus::Confirmed => return Ok(ConfirmOutcome::AlreadyConfirmed(first)),
            BookingStatus::Cancelled | BookingStatus::Unfulfilled => {
                return Ok(ConfirmOutcome::Unfulfilled(first))
            }
            _ => {}
        }
        check_tickets(&first, request)?;
        transaction!(self, |s| {
            let booking = read_booking(self, Some(&mut s), id)
                .await?
                .ok_or_else(|| Error::not_found("booking", id))?;
            match booking.status {
                BookingStatus::Confirmed => return Ok(ConfirmOutcome::AlreadyConfirmed(booking)),
                BookingStatus::Cancelled | BookingStatus::Unfulfilled => {
                    return Ok(ConfirmOutcome::Unfulfilled(booking))
                }
                _ => {}
            }
            // Fast path: a live hold becomes confirmed; the event's counters are
            // not touched (the units were taken by the hold).
            if booking.status == BookingStatus::Pending {
                let confirmed = self
                    .col("holds")
                    .update_one(
                        doc! {
                            "_id": self.uid(booking.hold_id.0),
                            "status": "active",
                            "booking_id": self.uid(id.0),
                            "expires_at": { "$gt": crate::bsonx::date(now) },
                        },
                        doc! { "$set": { "status": "confirmed", "body.status": "confirmed" } },
                    )
                    .session(&mut s)
                    .await
                    .map_err(db)?;
                if confirmed.modified_count == 1 {
                    return confirm_now(self, &mut s, booking, None, request).await;
                }
            }
            // The hold lapsed or ended: take the units again if they fit.
            let mut locked = lock_existing(self, &mut s, booking.event_id, Some(now)).await?;
            let booking = read_booking(self, Some(&mut s), id)
                .await?
                .ok_or_else(|| Error::not_found("booking", id))?;
            let hold = read_hold(self, Some(&mut s), booking.hold_id).await?;
            let hold_active = hold
                .as_ref()
                .is_some_and(|h| h.status == HoldStatus::Active && h.expires_at > now);
            let reason = if hold_active {
                None
            } else if locked.event.status.is_final() {
                Some(Err(BookingReason::EventCancelled))
            } else {
                let demand = demand_of(&locked.tiers, &booking.lines);
                match check_capacity(&demand, |k| locked.available(k)) {
                    Ok(()) => {
                        apply_demand(self, &mut s, &mut locked, &demand, 1).await?;
                        if let Some(coupon) = hold.as_ref().and_then(|h| h.coupon) {
                            coupon_uses(self, &mut s, &[(coupon, booking.customer)], true).await?;
                        }
                        Some(Ok(BookingReason::Reacquired))
                    }
                    Err(_) => Some(Err(BookingReason::SoldOutAfterExpiry)),
                }
            };
            locked.seal(self, &mut s).await?;
            match reason {
                None | Some(Ok(_)) => {
                    if hold.is_some() {
                        self.col("holds")
                            .update_one(
                                doc! { "_id": self.uid(booking.hold_id.0) },
                                doc! { "$set": { "status": "confirmed", "body.status": "confirmed" } },
                            )
                            .session(&mut s)
                            .await
                            .map_err(db)?;
                    }
                    confirm_now(self, &mut s, booking, reason.and_then(|r| r.ok()), request).await
                }
                Some(Err(why)) => {
                    let mut booking = booking;
                    set_state(
                        self,
                        &mut s,
                        &mut booking,
                        BookingStatus::Unfulfilled,
                        Some(why.clone()),
                        now,
                    )
                    .await?;
                    record(
                        self,
                        &mut s,
                        now,
                        [DomainEvent::BookingUnfulfilled {
                            event_id: booking.event_id,
                            booking_id: id,
                            reason: why,
                        }],
                    )
                    .await?;
                    Ok(ConfirmOutcome::Unfulfilled(booking))
                }
            }
        })
    }

    async fn fail_booking(
        &self,
        id: BookingId,
        reason: BookingReason,
        now: DateTime<Utc>,
    ) -> Result<Booking> {
        let first = read_booking(self, None, id)
            .await?
            .ok_or_else(|| Error::not_found("booking", id))?;
        match first.status {
            BookingStatus::Failed | BookingStatus::Expired => return Ok(first),
            BookingStatus::Pending => {}
            other => return Err(Error::invalid_state("booking", id, other, "fail")),
        }
        transaction!(self, |s| {
            let mut locked = lock_existing(self, &mut s, first.event_id, Some(now)).await?;
            let mut out = Vec::new();
            if let Some(hold) = read_hold(self, Some(&mut s), first.hold_id).await? {
                out = end_holds(
                    self,
                    &mut s,
                    &mut locked,
                    vec![hold],
                    HoldStatus::Released,
                    None,
                    now,
                )
                .await?;
            }
            let mut booking = read_booking(self, Some(&mut s), id)
                .await?
                .ok_or_else(|| Error::not_found("booking", id))?;
            match booking.status {
                BookingStatus::Pending => {
                    set_state(
                        self,
                        &mut s,
                        &mut booking,
                        BookingStatus::Failed,
                        Some(reason.clone()),
                        now,
                    )
                    .await?;
                    out.push(DomainEvent::BookingFailed {
                        event_id: booking.event_id,
                        booking_id: id,
                        reason: reason.clone(),
                    });
                }
                BookingStatus::Failed | BookingStatus::Expired => {}
                other => return Err(Error::invalid_state("booking", id, other, "fail")),
            }
            record(self, &mut s, now, out).await?;
            locked.seal(self, &mut s).await?;
            Ok(booking)
        })
    }

    async fn cancel_booking(&self, request: &CancelBooking) -> Result<Booking> {
        let id = request.booking_id;
        let event = read_booking(self, None, id)
            .await?
            .ok_or_else(|| Error::not_found("booking", id))?
            .event_id;
        transaction!(self, |s| {
            let mut locked = lock_existing(self, &mut s, event, Some(request.now)).await?;
            let mut booking = read_booking(self, Some(&mut s), id)
                .await?
                .ok_or_else(|| Error::not_found("booking", id))?;
            match booking.status {
                BookingStatus::Cancelled => return Ok(booking),
                BookingStatus::Confirmed => {}
                other => return Err(Error::invalid_state("booking", id, other, "cancel")),
            }
            let tickets: Vec<Document> = self
                .col("tickets")
                .find(doc! { "booking_id": self.uid(id.0) })
                .session(&mut s)
                .await
                .map_err(db)?
                .stream(&mut s)
                .try_collect()
                .await
                .map_err(db)?;
            let mut checked_in = false;
            for t in &tickets {
                let t: ems_core::ticket::Ticket = from_body("ticket", t)?;
                checked_in |= t.checked_in_at.is_some();
            }
            check_cancel(request, checked_in)?;
            if let Some(r) = &request.refund {
                let payment = read_payment(self, Some(&mut s), r.payment_id)
                    .await?
                    .ok_or_else(|| Error::not_found("payment", r.payment_id))?;
                let others = refunds_of(self, Some(&mut s), id).await?;
                check_refundable(&payment, r, &others)?;
            }
            self.col("tickets")
                .update_many(
                    doc! { "booking_id": self.uid(id.0) },
                    doc! { "$set": { "status": "void", "body.status": "void" } },
                )
                .session(&mut s)
                .await
                .map_err(db)?;
            let demand = demand_of(&locked.tiers, &booking.lines);
            apply_demand(self, &mut s, &mut locked, &demand, -1).await?;
            self.col("holds")
                .update_one(
                    doc! { "_id": self.uid(booking.hold_id.0) },
                    doc! { "$set": { "status": "released", "body.status": "released" } },
                )
                .session(&mut s)
                .await
                .map_err(db)?;
            set_state(
                self,
                &mut s,
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
                insert_refund_doc(self, &mut s, r).await?;
                out.push(DomainEvent::RefundRequested {
                    booking_id: id,
                    refund_id: r.id,
                    amount: r.amount,
                });
            }
            record(self, &mut s, request.now, out).await?;
            locked.seal(self, &mut s).await?;
            Ok(booking)
        })
    }
}
