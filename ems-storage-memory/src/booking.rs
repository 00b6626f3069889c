use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ems_core::booking::*;
use ems_core::id::{BookingId, EventId, UserId};
use ems_core::inventory::{check_capacity, demand_of, HoldStatus};
use ems_core::outbox::DomainEvent;
use ems_core::ticket::TicketStatus;
use ems_core::{Error, Result};

use crate::MemoryStore;

impl MemoryStore {
    /// The shard holding booking `id`; the booking is in it whenever this is `Ok`
    /// (bookings are never removed).
    fn booking_shard(
        &self,
        id: BookingId,
    ) -> Result<std::sync::Arc<parking_lot::Mutex<crate::state::Shard>>> {
        self.shard_via(&self.inner.bookings, &id)
            .ok_or_else(|| Error::not_found("booking", id))
    }
}

/// Each checkout step is already one critical section here; batches run one by one.
#[async_trait]
impl CheckoutStore for MemoryStore {}

#[async_trait]
impl BookingStore for MemoryStore {
    async fn create_booking(&self, booking: &Booking) -> Result<Booking> {
        let shard = self.shard_or_missing(booking.event_id)?;
        let existing = {
            let mut s = shard.lock();
            let key = (booking.customer, booking.idempotency_key.clone());
            match self.inner.booking_keys.entry(key) {
                dashmap::Entry::Occupied(o) => Some(*o.get()),
                dashmap::Entry::Vacant(v) => {
                    let mut out = Vec::new();
                    s.expire_due(booking.created_at, u32::MAX, &mut out);
                    let hold = s
                        .holds
                        .get(&booking.hold_id)
                        .ok_or_else(|| Error::not_found("hold", booking.hold_id))?;
                    if let Err(e) = check_bookable(hold, booking) {
                        self.record(booking.created_at, out);
                        return Err(e);
                    }
                    if let Some(h) = s.holds.get_mut(&booking.hold_id) {
                        h.booking_id = Some(booking.id);
                    }
                    s.bookings.insert(booking.id, booking.clone());
                    v.insert((booking.id, booking.event_id));
                    self.inner.bookings.insert(booking.id, booking.event_id);
                    self.inner
                        .customer_bookings
                        .entry(booking.customer)
                        .or_default()
                        .insert(booking.id);
                    out.push(DomainEvent::BookingCreated {
                        event_id: booking.event_id,
                        booking_id: booking.id,
                        customer: booking.customer,
                    });
                    self.record(booking.created_at, out);
                    None
                }
            }
        };
        match existing {
            None => Ok(booking.clone()),
            Some((id, _)) => self
                .booking(id)
                .await?
                .ok_or_else(|| Error::not_found("booking", id)),
        }
    }

    async fn booking(&self, id: BookingId) -> Result<Option<Booking>> {
        Ok(self
            .shard_via(&self.inner.bookings, &id)
            .and_then(|s| s.lock().bookings.get(&id).cloned()))
    }

    async fn booking_by_key(&self, customer: UserId, key: &str) -> Result<Option<Booking>> {
        let found = self
            .inner
            .booking_keys
            .get(&(customer, key.to_owned()))
            .map(|e| e.value().0);
        match found {
            Some(id) => self.booking(id).await,
            None => Ok(None),
        }
    }

    async fn bookings_for_customer(
        &self,
        customer: UserId,
        before: Option<BookingId>,
        limit: u32,
    ) -> Result<Vec<Booking>> {
        let ids: Vec<BookingId> = match self.inner.customer_bookings.get(&customer) {
            Some(set) => match before {
                Some(b) => set.range(..b).rev().take(limit as usize).copied().collect(),
                None => set.iter().rev().take(limit as usize).copied().collect(),
            },
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
        let iter: Box<dyn Iterator<Item = &Booking>> = match before {
            Some(b) => Box::new(s.bookings.range(..b).rev().map(|(_, v)| v)),
            None => Box::new(s.bookings.values().rev()),
        };
        Ok(iter.take(limit as usize).cloned().collect())
    }

    async fn confirm_booking(&self, request: &ConfirmBooking) -> Result<ConfirmOutcome> {
        let id = request.booking_id;
        let now = request.now;
        let shard = self.booking_shard(id)?;
        let mut s = shard.lock();
        let booking = s
            .bookings
            .get(&id)
            .expect("the index names only bookings stored in its shard")
            .clone();
        match booking.status {
            BookingStatus::Confirmed => return Ok(ConfirmOutcome::AlreadyConfirmed(booking)),
            BookingStatus::Cancelled | BookingStatus::Unfulfilled => {
                return Ok(ConfirmOutcome::Unfulfilled(booking))
            }
            _ => {}
        }
        let expected: u32 = booking.quantity();
        if request.tickets.len() != expected as usize
            || request
                .tickets
                .iter()
                .any(|t| t.booking_id != id || t.event_id != booking.event_id)
        {
            return Err(Error::invalid(
                "tickets",
                format!("one ticket per unit of booking {id} ({expected})"),
            ));
        }
        let mut out = Vec::new();
        s.expire_due(now, u32::MAX, &mut out);
        let hold_active = s
            .holds
            .get(&booking.hold_id)
            .is_some_and(|h| h.status == HoldStatus::Active);
        let reason = if hold_active {
            None
        } else if s.event.status.is_final() {
            Some(Err(BookingReason::EventCancelled))
        } else {
            let demand = demand_of(&s.tiers, &booking.lines);
            match check_capacity(&demand, |k| s.available(k)) {
                Ok(()) => {
                    s.take(&demand);
                    // The lapsed hold gave its coupon use back; the payment was made
                    // with the discount, so the use counts again (limits were met then).
                    if let Some(coupon) = s.holds.get(&booking.hold_id).and_then(|h| h.coupon) {
                        s.coupons.lock().take(coupon, booking.customer);
                    }
                    Some(Ok(BookingReason::Reacquired))
                }
                Err(_) => Some(Err(BookingReason::SoldOutAfterExpiry)),
            }
        };
        let event_id = booking.event_id;
        let outcome = match reason {
            None | Some(Ok(_)) => {
                if let Some(h) = s.holds.get_mut(&booking.hold_id) {
                    let key = (h.expires_at, h.id);
                    h.status = HoldStatus::Confirmed;
                    s.expiry.remove(&key);
                }
                for t in &request.tickets {
                    s.tickets.insert(t.id, Box::new(t.clone()));
                    self.inner.tickets.insert(t.id, event_id);
                }
                s.booking_tickets
                    .insert(id, request.tickets.iter().map(|t| t.id).collect());
                let b = s
                    .bookings
                    .get_mut(&id)
                    .expect("read above under the same lock");
                b.status = BookingStatus::Confirmed;
                b.reason = reason.and_then(|r| r.ok());
                b.updated_at = now;
                b.version += 1;
                out.push(DomainEvent::BookingConfirmed {
                    event_id,
                    booking_id: id,
                    customer: b.customer,
                    tickets: expected,
                });
                ConfirmOutcome::Confirmed(b.clone())
            }
            Some(Err(why)) => {
                let b = s
                    .bookings
                    .get_mut(&id)
                    .expect("read above under the same lock");
                b.status = BookingStatus::Unfulfilled;
                b.reason = Some(why.clone());
                b.updated_at = now;
                b.version += 1;
                out.push(DomainEvent::BookingUnfulfilled {
                    event_id,
                    booking_id: id,
                    reason: why,
                });
                ConfirmOutcome::Unfulfilled(b.clone())
            }
        };
        self.record(now, out);
        Ok(outcome)
    }

    async fn fail_booking(
        &self,
        id: BookingId,
        reason: BookingReason,
        now: DateTime<Utc>,
    ) -> Result<Booking> {
        let shard = self.booking_shard(id)?;
        let mut s = shard.lock();
        let booking = s
            .bookings
            .get(&id)
            .expect("the index names only bookings stored in its shard")
            .clone();
        match booking.status {
            BookingStatus::Failed | BookingStatus::Expired => return Ok(booking),
            BookingStatus::Pending => {}
            other => return Err(Error::invalid_state("booking", id, other, "fail")),
        }
        let mut out = Vec::new();
        s.expire_due(now, u32::MAX, &mut out);
        s.end_hold(booking.hold_id, HoldStatus::Released, None, now, &mut out);
        let b = s
            .bookings
            .get_mut(&id)
            .expect("read above under the same lock");
        if b.status == BookingStatus::Pending {
            b.status = BookingStatus::Failed;
            b.reason = Some(reason.clone());
            b.updated_at = now;
            b.version += 1;
            out.push(DomainEvent::BookingFailed {
                event_id: b.event_id,
                booking_id: id,
                reason,
            });
        }
        let b = b.clone();
        self.record(now, out);
        Ok(b)
    }

    async fn cancel_booking(&self, request: &CancelBooking) -> Result<Booking> {
        let id = request.booking_id;
        let shard = self.booking_shard(id)?;
        let mut s = shard.lock();
        let booking = s
            .bookings
            .get(&id)
            .expect("the index names only bookings stored in its shard")
            .clone();
        match booking.status {
            BookingStatus::Cancelled => return Ok(booking),
            BookingStatus::Confirmed => {}
            other => return Err(Error::invalid_state("booking", id, other, "cancel")),
        }
        let ticket_ids = s.booking_tickets.get(&id).cloned().unwrap_or_default();
        let checked_in = ticket_ids
            .iter()
            .any(|t| s.tickets.get(t).is_some_and(|t| t.checked_in_at.is_some()));
        check_cancel(request, checked_in)?;
        if let Some(r) = &request.refund {
            s.check_refundable(r)?;
        }
        let mut out = Vec::new();
        for t in &ticket_ids {
            if let Some(t) = s.tickets.get_mut(t) {
                t.status = TicketStatus::Void;
            }
        }
        let demand = demand_of(&s.tiers, &booking.lines);
        s.give_back(&demand);
        if let Some(h) = s.holds.get_mut(&booking.hold_id) {
            h.status = HoldStatus::Released;
        }
        let b = s
            .bookings
            .get_mut(&id)
            .expect("read above under the same lock");
        b.status = BookingStatus::Cancelled;
        b.reason = Some(request.reason.clone());
        b.updated_at = request.now;
        b.version += 1;
        let b = b.clone();
        out.push(DomainEvent::BookingCancelled {
            event_id: b.event_id,
            booking_id: id,
            reason: request.reason.clone(),
        });
        if let Some(r) = &request.refund {
            s.insert_refund(r);
            self.inner.refunds.insert(r.id, b.event_id);
            out.push(DomainEvent::RefundRequested {
                booking_id: id,
                refund_id: r.id,
                amount: r.amount,
            });
        }
        self.record(request.now, out);
        Ok(b)
    }
}
