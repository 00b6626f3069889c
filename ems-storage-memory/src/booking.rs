use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ems_core::booking::*;
use ems_core::id::{BookingId, EventId, PaymentId, UserId};
use ems_core::inventory::{check_capacity, demand_of, HoldStatus};
use ems_core::outbox::DomainEvent;
use ems_core::ticket::TicketStatus;
use ems_core::{Error, Result};

use crate::payment::Inserted;
use crate::state::HoldSet;
use crate::state::{BookingRec, Events, Shard, StoredTicket};
use crate::{LaneGuard, Loc, MemoryStore, ShardCell, ShardGuard};

impl MemoryStore {
    /// The shard holding booking `id`, with its lanes; the booking is in it
    /// whenever this is `Ok` (bookings are never removed).
    fn booking_cell(&self, id: BookingId) -> Result<&ShardCell> {
        self.inner
            .bookings
            .get(&id)
            .and_then(|loc| self.numbered_at(loc.shard))
            .ok_or_else(|| Error::not_found("booking", id))
    }

    /// Locks what opening `booking` writes: the lane keeping its hold, if
    /// a lane of its event's shard does, then the shard (see
    /// [`MemoryStore::lock_at`]).
    fn lock_for_booking(
        &self,
        booking: &Booking,
    ) -> Result<(Option<LaneGuard<'_>>, ShardGuard<'_>)> {
        let (number, cell) = self.numbered_cell_or_missing(booking.event_id)?;
        let now = Some(booking.created_at);
        // A checkout's hold is the shard's own (`try_hold_to_book`), and a
        // hold the shard keeps never moves to a lane.
        let s = self.lock_at(cell, now);
        if s.own.holds.contains_key(&booking.hold_id) {
            return Ok((None, s));
        }
        drop(s);
        // A hold placed by `try_hold` is booked on the thread that placed
        // it, mostly: that thread's lane is looked in first, without the
        // index.
        if !cell.lanes().is_empty() {
            let (lane, s) = self.lock_lane_at(cell, crate::my_lane(), now);
            if lane.holds.contains_key(&booking.hold_id) {
                return Ok((Some(lane), s));
            }
        }
        // Anywhere else, as any look-up of a hold finds it; a hold of
        // another event (or of none) is not this booking's to take, and
        // opening it fails under this event's lock.
        if let Some((lane, s)) = self.lock_hold_at(&booking.hold_id, now) {
            if s.number == number {
                return Ok((lane, s));
            }
        }
        Ok((None, self.lock_at(cell, now)))
    }

    /// `create_booking` under the lock of the booking's shard (and of the
    /// lane keeping its hold: `lane`, `None` if the shard keeps it itself):
    /// `Ok(None)` when stored, `Ok(Some(loc))` when the customer's key
    /// already names the booking at `loc` (read it after unlocking: it may
    /// live in another shard). The booked hold moves to the shard's own set.
    fn create_booking_locked(
        &self,
        s: &mut Shard,
        lane: Option<&mut HoldSet>,
        booking: &Booking,
    ) -> Result<Option<Loc>> {
        let key = self
            .inner
            .keys
            .booking_key(booking.customer, &booking.idempotency_key);
        match self.inner.booking_keys.entry(key) {
            dashmap::Entry::Occupied(o) => Ok(Some(*o.get())),
            dashmap::Entry::Vacant(v) => {
                let taken = || Error::already_exists("booking", "id", booking.id);
                if self.inner.bookings.contains_key(&booking.id) {
                    return Err(taken());
                }
                let mut out = Events::new();
                s.expire_due(None, booking.created_at, u32::MAX, &mut out);
                // Holds expired just now are recorded whether or not this booking is.
                let set = lane.as_deref().unwrap_or(&s.own);
                let shares_hold = match set.holds.get(&booking.hold_id) {
                    None => Err(Error::not_found("hold", booking.hold_id)),
                    Some(hold) => {
                        check_bookable_terms(hold.terms(s.config.event.id), booking).map(|()| {
                            let event = &s.config.event;
                            hold.repeated_by(booking, event.id, event.organization)
                        })
                    }
                };
                let shares_hold = match shares_hold {
                    Ok(shares) => shares,
                    Err(e) => {
                        self.record(booking.created_at, out);
                        return Err(e);
                    }
                };
                // The booking's place, taken in the id index before anything
                // is written (the index is shared by every shard: another
                // event's booking may have taken the id since the check
                // above). Readers of the place lock this shard, so they find
                // the booking there once it is in.
                let loc = Loc {
                    shard: s.number,
                    slot: s.bookings.next_slot(),
                };
                if self.inner.bookings.insert_new(booking.id, loc).is_err() {
                    self.record(booking.created_at, out);
                    return Err(taken());
                }
                let gateway = s.gateways.number(&booking.gateway);
                let rec = BookingRec::new(booking, shares_hold, gateway);
                if let Some(h) = lane.and_then(|lane| lane.take(&booking.hold_id)) {
                    s.own.put(h);
                }
                if let Some(h) = s.own.holds.get_mut(&booking.hold_id) {
                    h.booking_id = Some(booking.id);
                    // Never forgotten now: into the index of booked holds.
                    self.hold_booked(booking.hold_id, s.number);
                }
                let slot = s.bookings.insert(booking.id, rec);
                debug_assert_eq!(slot, loc.slot);
                v.insert(loc);
                let mut mine = self
                    .inner
                    .customer_bookings
                    .entry(booking.customer)
                    .or_default();
                // Ids grow with time (UUID v7), so this is nearly always the end.
                if mine.last().is_none_or(|last| *last < booking.id) {
                    mine.push(booking.id);
                } else {
                    let at = mine.partition_point(|b| *b < booking.id);
                    mine.insert(at, booking.id);
                }
                out.push(DomainEvent::BookingCreated {
                    event_id: booking.event_id,
                    booking_id: booking.id,
                    customer: booking.customer,
                });
                self.record(booking.created_at, out);
                Ok(None)
            }
        }
    }

    /// `confirm_booking` under the lock of the booking's shard, taken by
    /// [`MemoryStore::lock_at`] at the request's instant. `known`: the
    /// caller's copy of the booking; when the stored one is that, version
    /// for version, a confirmation answers [`Settled::Confirmed`] instead
    /// of building the booking back.
    fn confirm_locked(
        &self,
        s: &mut Shard,
        request: &ConfirmBooking,
        known: Option<&Booking>,
    ) -> Result<Settled> {
        let id = request.booking_id;
        let now = request.now;
        let loc = s
            .loc_of(&id)
            .ok_or_else(|| Error::not_found("booking", id))?;
        let rec = s.bookings.at(loc.slot).expect("its slot, read above");
        let fields = rec.fields();
        match fields.status {
            BookingStatus::Confirmed => {
                return Ok(ConfirmOutcome::AlreadyConfirmed(s.booking(rec)).into());
            }
            BookingStatus::Cancelled | BookingStatus::Unfulfilled => {
                return Ok(ConfirmOutcome::Unfulfilled(s.booking(rec)).into());
            }
            _ => {}
        }
        // Ids, lines and prices never change: these say whether the
        // caller's copy is the stored booking.
        let known = known.is_some_and(|k| {
            k.id == id
                && k.version == fields.version
                && k.status == fields.status
                && k.updated_at == fields.updated_at
                && k.reason.as_ref() == fields.reason.as_deref()
        });
        let (event_id, hold_id) = (s.config.event.id, fields.hold_id);
        let customer = s.booking_customer(rec);
        let lines = s.booking_lines(rec);
        let expected: u32 = lines.iter().map(|l| l.quantity).sum();
        if request.tickets.len() != expected as usize
            || request
                .tickets
                .iter()
                .any(|t| t.booking_id != id || t.event_id != event_id)
        {
            return Err(Error::invalid(
                "tickets",
                format!("one ticket per unit of booking {id} ({expected})"),
            ));
        }
        let demand = demand_of(&s.config.tiers, lines);
        // Built while the lines are at hand; kept only if the booking is confirmed.
        let stored: Box<[StoredTicket]> = request
            .tickets
            .iter()
            .map(|t| StoredTicket::of(t, lines, customer))
            .collect();
        let mut out = Events::new();
        s.expire_due(None, now, u32::MAX, &mut out);
        let hold_active = s
            .own
            .holds
            .get(&hold_id)
            .is_some_and(|h| h.status == HoldStatus::Active);
        let reason = if hold_active {
            None
        } else if s.config.event.status.is_final() {
            Some(Err(BookingReason::EventCancelled))
        } else {
            match check_capacity(&demand, |k| s.available(k)) {
                Ok(()) => {
                    s.take(&demand);
                    // The lapsed hold gave its coupon use back; the payment was made
                    // with the discount, so the use counts again (limits were met then).
                    if let Some(coupon) = s.own.holds.get(&hold_id).and_then(|h| h.coupon) {
                        s.coupons.lock().take(coupon, customer);
                    }
                    Some(Ok(BookingReason::Reacquired))
                }
                Err(_) => Some(Err(BookingReason::SoldOutAfterExpiry)),
            }
        };
        let confirmed = !matches!(reason, Some(Err(_)));
        let on_its_hold = reason.is_none();
        if confirmed {
            if let Some(h) = s.own.holds.get_mut(&hold_id) {
                let key = (h.expires_at, h.id);
                h.status = HoldStatus::Confirmed;
                s.own.expiry.remove(&key);
            }
        }
        let rec = s
            .bookings
            .get_mut(&id)
            .expect("read above under the same lock");
        let b = rec.fields_mut();
        b.updated_at = now;
        b.version += 1;
        match reason {
            None | Some(Ok(_)) => {
                b.status = BookingStatus::Confirmed;
                b.reason = reason.and_then(|r| r.ok()).map(Box::new);
                rec.tickets = stored;
                for t in &request.tickets {
                    self.inner.tickets.insert(t.id, loc);
                }
                out.push(DomainEvent::BookingConfirmed {
                    event_id,
                    booking_id: id,
                    customer,
                    tickets: expected,
                });
            }
            Some(Err(why)) => {
                b.status = BookingStatus::Unfulfilled;
                b.reason = Some(Box::new(why.clone()));
                out.push(DomainEvent::BookingUnfulfilled {
                    event_id,
                    booking_id: id,
                    reason: why,
                });
            }
        }
        self.record(now, out);
        // Confirmed on its hold (no reason: a lapsed hold's booking has
        // changed since the caller read it): the caller's copy says it all.
        if known && on_its_hold {
            return Ok(Settled::Confirmed { reason: None });
        }
        let booking = s.booking(&s.bookings[&id]);
        Ok(if confirmed {
            ConfirmOutcome::Confirmed(booking)
        } else {
            ConfirmOutcome::Unfulfilled(booking)
        }
        .into())
    }
}

/// Each batch runs request by request, each request one critical section: a
/// booking with its payment record, or a payment's success with its
/// confirmation, under one lock of the event's shard.
#[async_trait]
impl CheckoutStore for MemoryStore {
    async fn open_checkouts(&self, batch: &[OpenCheckout]) -> Vec<Result<Opened>> {
        let mut out = Vec::with_capacity(batch.len());
        for request in batch {
            out.push(self.open_checkout(request).await);
        }
        out
    }

    async fn settle_paid(&self, batch: &[SettlePaid]) -> Vec<Result<Settled>> {
        let mut out = Vec::with_capacity(batch.len());
        for request in batch {
            out.push(self.settle_checkout(request).await);
        }
        out
    }
}

impl MemoryStore {
    /// One opening under one lock. Its rare paths' futures are boxed: the
    /// port's boxed future of every opening is this future, and it would
    /// otherwise be as large as the largest of them (592 bytes, copied into
    /// its box on every checkout).
    async fn open_checkout(&self, request: &OpenCheckout) -> Result<Opened> {
        let (booking, payment) = (&request.booking, &request.payment);
        if payment.event_id != booking.event_id || payment.booking_id != booking.id {
            // Not one shard's business: the single steps say what is wrong.
            return Box::pin(open_one(self, request)).await;
        }
        let existing = {
            let (mut lane, mut s) = self.lock_for_booking(booking)?;
            match self.create_booking_locked(&mut s, lane.as_deref_mut(), booking)? {
                Some(loc) => Err(loc),
                None => Ok(self.insert_payment_locked(&mut s, payment)),
            }
        };
        match existing {
            Err(loc) => Ok(Opened::Existing(Box::new(
                self.keyed_booking(loc, booking)?,
            ))),
            Ok(Ok(Inserted::Stored)) => Ok(Opened::Created { payment: None }),
            Ok(Ok(Inserted::Existing(other))) => Ok(Opened::Created {
                payment: Some(Box::new(
                    Box::pin(self.keyed_payment(other, payment)).await?,
                )),
            }),
            // The booking is in; its payment as `insert_payment` alone stores it.
            Ok(Ok(Inserted::Busy)) => Ok(Opened::created(
                payment,
                Box::pin(ems_core::payment::PaymentStore::insert_payment(
                    self, payment,
                ))
                .await?,
            )),
            Ok(Err(e)) => Err(e),
        }
    }

    async fn settle_checkout(&self, request: &SettlePaid) -> Result<Settled> {
        if request.payment.booking_id != request.confirm.booking_id {
            return Box::pin(settle_one(self, request)).await;
        }
        let cell = self.booking_cell(request.confirm.booking_id)?;
        let mut s = self.lock_at(cell, Some(request.confirm.now));
        self.update_payment_locked(&mut s, &request.payment)?;
        self.confirm_locked(&mut s, &request.confirm, Some(&request.booking))
    }

    /// The booking at `loc`, found under the key of `new`: the customer's
    /// booking with that key (checked, see [`crate::Fingerprint`]).
    fn keyed_booking(&self, loc: Loc, new: &Booking) -> Result<Booking> {
        let b = self
            .read_loc(loc, |s, r| Some(s.booking(r)))
            .ok_or_else(|| Error::not_found("booking", new.id))?;
        if b.customer != new.customer || b.idempotency_key != new.idempotency_key {
            return Err(Error::already_exists(
                "booking",
                "idempotency_key",
                &new.idempotency_key,
            ));
        }
        Ok(b)
    }

    pub(crate) async fn stored_payment(&self, id: PaymentId) -> Result<ems_core::payment::Payment> {
        use ems_core::payment::PaymentStore;
        self.payment(id)
            .await?
            .ok_or_else(|| Error::not_found("payment", id))
    }
}

#[async_trait]
impl BookingStore for MemoryStore {
    async fn create_booking(&self, booking: &Booking) -> Result<Booking> {
        let existing = {
            let (mut lane, mut s) = self.lock_for_booking(booking)?;
            self.create_booking_locked(&mut s, lane.as_deref_mut(), booking)?
        };
        match existing {
            None => Ok(booking.clone()),
            Some(loc) => self.keyed_booking(loc, booking),
        }
    }

    async fn booking(&self, id: BookingId) -> Result<Option<Booking>> {
        Ok(self.read_booking(id, |s, r| s.booking(r)))
    }

    async fn booking_by_key(&self, customer: UserId, key: &str) -> Result<Option<Booking>> {
        let fingerprint = self.inner.keys.booking_key(customer, key);
        Ok(self
            .read_at(&self.inner.booking_keys, &fingerprint, |s, r| {
                Some(s.booking(r))
            })
            .filter(|b| b.customer == customer && b.idempotency_key == key))
    }

    async fn bookings_for_customer(
        &self,
        customer: UserId,
        before: Option<BookingId>,
        limit: u32,
    ) -> Result<Vec<Booking>> {
        let ids: Vec<BookingId> = match self.inner.customer_bookings.get(&customer) {
            Some(mine) => {
                let end = before.map_or(mine.len(), |b| mine.partition_point(|id| *id < b));
                mine[..end]
                    .iter()
                    .rev()
                    .take(limit as usize)
                    .copied()
                    .collect()
            }
            None => Vec::new(),
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(b) = self.booking(id).await? {
                out.push(b);
            }
        }
        Ok(out)
    }

    async fn bookings_for_event(
        &self,
        event: EventId,
        before: Option<BookingId>,
        limit: u32,
    ) -> Result<Vec<Booking>> {
        let Some(shard) = self.shard(event) else {
            return Ok(Vec::new());
        };
        let s = shard.lock();
        Ok(s.bookings
            .newest_first(before)
            .take(limit as usize)
            .map(|r| s.booking(r))
            .collect())
    }

    async fn confirm_booking(&self, request: &ConfirmBooking) -> Result<ConfirmOutcome> {
        let cell = self.booking_cell(request.booking_id)?;
        let mut s = self.lock_at(cell, Some(request.now));
        match self.confirm_locked(&mut s, request, None)? {
            Settled::Outcome(outcome) => Ok(*outcome),
            // Answered only to a caller with its copy of the booking.
            Settled::Confirmed { .. } => Ok(ConfirmOutcome::Confirmed(
                s.booking(&s.bookings[&request.booking_id]),
            )),
        }
    }

    async fn fail_booking(
        &self,
        id: BookingId,
        reason: BookingReason,
        now: DateTime<Utc>,
    ) -> Result<Booking> {
        let cell = self.booking_cell(id)?;
        let mut s = self.lock_at(cell, Some(now));
        let (status, hold_id) = {
            let b = s
                .bookings
                .get(&id)
                .expect("the index names only bookings stored in its shard")
                .fields();
            (b.status, b.hold_id)
        };
        match status {
            BookingStatus::Failed | BookingStatus::Expired => {
                return Ok(s.booking_by_id(id).expect("read above under the same lock"))
            }
            BookingStatus::Pending => {}
            other => return Err(Error::invalid_state("booking", id, other, "fail")),
        }
        let mut out = Events::new();
        let event_id = s.config.event.id;
        s.expire_due(None, now, u32::MAX, &mut out);
        s.end_hold(None, hold_id, HoldStatus::Released, None, now, &mut out);
        let b = s
            .bookings
            .get_mut(&id)
            .expect("read above under the same lock")
            .fields_mut();
        if b.status == BookingStatus::Pending {
            b.status = BookingStatus::Failed;
            b.reason = Some(Box::new(reason.clone()));
            b.updated_at = now;
            b.version += 1;
            out.push(DomainEvent::BookingFailed {
                event_id,
                booking_id: id,
                reason,
            });
        }
        let b = s.booking_by_id(id).expect("read above under the same lock");
        self.record(now, out);
        Ok(b)
    }

    async fn cancel_booking(&self, request: &CancelBooking) -> Result<Booking> {
        let id = request.booking_id;
        let (shard, loc) = self
            .shard_at(&self.inner.bookings, &id)
            .ok_or_else(|| Error::not_found("booking", id))?;
        let mut s = shard.lock();
        let rec = s
            .bookings
            .at(loc.slot)
            .expect("the index names only bookings stored in its shard");
        match rec.fields().status {
            BookingStatus::Cancelled => return Ok(s.booking(rec)),
            BookingStatus::Confirmed => {}
            other => return Err(Error::invalid_state("booking", id, other, "cancel")),
        }
        let checked_in = rec.tickets.iter().any(|t| t.checked_in_at.is_some());
        check_cancel(request, checked_in)?;
        if let Some(r) = &request.refund {
            rec.check_refundable(r, s.config.event.id, &s.gateways)?;
        }
        let demand = demand_of(&s.config.tiers, s.booking_lines(rec));
        let (event_id, hold_id) = (s.config.event.id, rec.fields().hold_id);
        s.give_back(&demand);
        if let Some(h) = s.own.holds.get_mut(&hold_id) {
            h.status = HoldStatus::Released;
        }
        let rec = s
            .bookings
            .get_mut(&id)
            .expect("read above under the same lock");
        for t in rec.tickets.iter_mut() {
            t.status = TicketStatus::Void;
        }
        let b = rec.fields_mut();
        b.status = BookingStatus::Cancelled;
        b.reason = Some(Box::new(request.reason.clone()));
        b.updated_at = request.now;
        b.version += 1;
        let mut out = vec![DomainEvent::BookingCancelled {
            event_id,
            booking_id: id,
            reason: request.reason.clone(),
        }];
        if let Some(r) = &request.refund {
            rec.add_refund(r.clone());
            self.inner.refunds.insert(r.id, loc);
            out.push(DomainEvent::RefundRequested {
                booking_id: id,
                refund_id: r.id,
                amount: r.amount,
            });
        }
        let b = s.booking_by_id(id).expect("read above under the same lock");
        self.record(request.now, out);
        Ok(b)
    }
}
