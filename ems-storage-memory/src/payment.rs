use async_trait::async_trait;
use ems_core::id::{BookingId, PaymentId, RefundId};
use ems_core::outbox::DomainEvent;
use ems_core::payment::*;
use ems_core::{Error, Result};

use crate::state::{BookingRec, Shard, StoredPayment};
use crate::MemoryStore;

/// What `insert_payment_locked` did.
pub(crate) enum Inserted {
    /// The payment is stored.
    Stored,
    /// Its idempotency key names payment `id` already (read it after
    /// unlocking: it may live in another shard).
    Existing(PaymentId),
    /// The key names another event's booking whose shard was busy: try
    /// again without this shard's lock (see `insert_payment_locked`).
    Busy,
}

impl MemoryStore {
    /// `insert_payment` under the lock of the payment's shard.
    ///
    /// A booking's own payment key (`booking-{its id}`, every checkout's
    /// first payment) is not indexed: the booking's record says whether a
    /// payment has it. Every other key is, and a key that is another
    /// booking's own key is checked against that booking's record too. That
    /// booking may live in another shard: its lock is only tried (two shards
    /// locked in opposite orders would deadlock), and `Busy` says to retry
    /// without this lock. The key's index entry is held throughout, so a
    /// key is given once even then.
    pub(crate) fn insert_payment_locked(
        &self,
        s: &mut Shard,
        payment: &Payment,
    ) -> Result<Inserted> {
        let Some(loc) = s.loc_of(&payment.booking_id) else {
            return Err(Error::not_found("booking", payment.booking_id));
        };
        if s.config.event.id != payment.event_id {
            return Err(Error::not_found("booking", payment.booking_id));
        }
        let slot = loc.slot;
        let key = &payment.idempotency_key;
        let own = is_booking_payment_key(key, payment.booking_id);
        let owner = if own {
            Some(payment.booking_id)
        } else {
            booking_of_payment_key(key)
        };
        let has_own =
            |rec: &BookingRec| rec.payments.iter().find(|p| p.has_own_key()).map(|p| p.id);
        if own {
            if let Some(id) = s.bookings.at(slot).and_then(has_own) {
                return Ok(Inserted::Existing(id));
            }
        }
        let fingerprint = self.inner.keys.payment_key(key);
        let by_key = match self.inner.payment_keys.entry(fingerprint) {
            dashmap::Entry::Occupied(o) => return Ok(Inserted::Existing(*o.get())),
            dashmap::Entry::Vacant(v) => v,
        };
        if let Some(other) = owner.filter(|_| !own) {
            let taken = match self.inner.bookings.get(&other) {
                None => None,
                Some(at) if at.shard == s.number => s.bookings.at(at.slot).and_then(has_own),
                Some(at) => {
                    let Some(shard) = self.numbered(at.shard) else {
                        return Err(Error::not_found("booking", other));
                    };
                    let Some(theirs) = shard.try_lock() else {
                        return Ok(Inserted::Busy);
                    };
                    theirs.bookings.at(at.slot).and_then(has_own)
                }
            };
            if let Some(id) = taken {
                return Ok(Inserted::Existing(id));
            }
        }
        let taken = || Error::already_exists("payment", "id", payment.id);
        if self.inner.payments.contains_key(&payment.id) {
            return Err(taken());
        }
        let gateway = s.gateways.number(&payment.gateway);
        let rec = s
            .bookings
            .at_mut(loc.slot)
            .ok_or_else(|| Error::not_found("booking", payment.booking_id))?;
        // Checked above; taken here by another event's payment meanwhile
        // (the id index is shared by every shard), it is refused the same.
        self.inner
            .payments
            .insert_new(payment.id, loc)
            .map_err(|_| taken())?;
        rec.add_payment(payment, gateway);
        if own {
            drop(by_key);
        } else {
            by_key.insert(payment.id);
        }
        if let Some(r) = &payment.reference {
            self.inner
                .payment_refs
                .insert(self.inner.keys.reference(&payment.gateway, r), loc);
        }
        self.record(
            payment.created_at,
            [DomainEvent::PaymentStarted {
                booking_id: payment.booking_id,
                payment_id: payment.id,
                amount: payment.amount,
            }],
        );
        Ok(Inserted::Stored)
    }

    /// Payment `id`, found under the idempotency key of `new` (checked, see
    /// [`crate::Fingerprint`]).
    pub(crate) async fn keyed_payment(&self, id: PaymentId, new: &Payment) -> Result<Payment> {
        let p = self.stored_payment(id).await?;
        if p.idempotency_key != new.idempotency_key {
            return Err(Error::already_exists(
                "payment",
                "idempotency_key",
                &new.idempotency_key,
            ));
        }
        Ok(p)
    }

    /// `update_payment` under the lock of the payment's shard.
    pub(crate) fn update_payment_locked(&self, s: &mut Shard, payment: &Payment) -> Result<()> {
        let gateway = s.gateways.number(&payment.gateway);
        let loc = s
            .loc_of(&payment.booking_id)
            .ok_or_else(|| Error::not_found("payment", payment.id))?;
        let current = s
            .bookings
            .at_mut(loc.slot)
            .and_then(|r| r.payments.iter_mut().find(|p| p.id == payment.id))
            .ok_or_else(|| Error::not_found("payment", payment.id))?;
        check_payment_version(payment, current.version)?;
        let event = payment_change_event(current.status, payment);
        if let Some(r) = &payment.reference {
            if current.reference() != Some(r.as_str()) {
                self.inner
                    .payment_refs
                    .insert(self.inner.keys.reference(&payment.gateway, r), loc);
            }
        }
        *current = StoredPayment::of(payment, gateway);
        self.record(payment.updated_at, event);
        Ok(())
    }
}

#[async_trait]
impl PaymentStore for MemoryStore {
    async fn insert_payment(&self, payment: &Payment) -> Result<Payment> {
        let shard = self.shard_or_missing(payment.event_id)?;
        loop {
            let inserted = self.insert_payment_locked(&mut shard.lock(), payment)?;
            match inserted {
                Inserted::Stored => return Ok(payment.clone()),
                Inserted::Existing(id) => return self.keyed_payment(id, payment).await,
                // Only a key naming another event's booking, while that
                // event's shard is locked: a lock held for one short
                // critical section (none awaits under it).
                Inserted::Busy => std::thread::yield_now(),
            }
        }
    }

    async fn payment(&self, id: PaymentId) -> Result<Option<Payment>> {
        Ok(self.read_at(&self.inner.payments, &id, |s, r| {
            let p = r.payments.iter().find(|p| p.id == id)?;
            Some(p.payment(r.fields().id, s.config.event.id, &s.gateways))
        }))
    }

    async fn payment_by_reference(
        &self,
        gateway: &str,
        reference: &str,
    ) -> Result<Option<Payment>> {
        let fingerprint = self.inner.keys.reference(gateway, reference);
        Ok(
            self.read_at(&self.inner.payment_refs, &fingerprint, |s, r| {
                r.payments
                    .iter()
                    .filter(|p| p.reference() == Some(reference))
                    .map(|p| p.payment(r.fields().id, s.config.event.id, &s.gateways))
                    .find(|p| p.gateway == gateway)
            }),
        )
    }

    async fn payments_for_booking(&self, booking: BookingId) -> Result<Vec<Payment>> {
        Ok(self
            .read_booking(booking, |s, r| r.payments(s.config.event.id, &s.gateways))
            .unwrap_or_default())
    }

    async fn update_payment(&self, payment: &Payment) -> Result<()> {
        let (shard, loc) = self
            .shard_at(&self.inner.payments, &payment.id)
            .ok_or_else(|| Error::not_found("payment", payment.id))?;
        let mut s = shard.lock();
        let booking = s.bookings.at(loc.slot).map(|r| r.fields().id);
        if booking != Some(payment.booking_id) {
            return Err(Error::invalid(
                "booking_id",
                "a payment stays with the booking it was made for",
            ));
        }
        self.update_payment_locked(&mut s, payment)
    }

    async fn insert_refund(&self, refund: &Refund) -> Result<()> {
        let (shard, loc) = self
            .shard_at(&self.inner.payments, &refund.payment_id)
            .ok_or_else(|| Error::not_found("payment", refund.payment_id))?;
        let mut guard = shard.lock();
        let s = &mut *guard;
        if self.inner.refunds.contains_key(&refund.id) {
            return Err(Error::already_exists("refund", "id", refund.id));
        }
        let event_id = s.config.event.id;
        let rec = s
            .bookings
            .at_mut(loc.slot)
            .ok_or_else(|| Error::not_found("payment", refund.payment_id))?;
        if rec.fields().id != refund.booking_id {
            return Err(Error::invalid(
                "booking_id",
                "refund names another booking than its payment",
            ));
        }
        rec.check_refundable(refund, event_id, &s.gateways)?;
        rec.add_refund(refund.clone());
        self.inner.refunds.insert(refund.id, loc);
        self.record(
            refund.created_at,
            [DomainEvent::RefundRequested {
                booking_id: refund.booking_id,
                refund_id: refund.id,
                amount: refund.amount,
            }],
        );
        Ok(())
    }

    async fn refund(&self, id: RefundId) -> Result<Option<Refund>> {
        Ok(self.read_at(&self.inner.refunds, &id, |_, r| {
            r.refunds.iter().find(|x| x.id == id).cloned()
        }))
    }

    async fn update_refund(&self, refund: &Refund) -> Result<()> {
        let (shard, loc) = self
            .shard_at(&self.inner.refunds, &refund.id)
            .ok_or_else(|| Error::not_found("refund", refund.id))?;
        let mut s = shard.lock();
        let rec = s
            .bookings
            .at_mut(loc.slot)
            .ok_or_else(|| Error::not_found("refund", refund.id))?;
        let at = rec
            .refunds
            .iter()
            .position(|x| x.id == refund.id)
            .ok_or_else(|| Error::not_found("refund", refund.id))?;
        let current = rec.refunds[at].clone();
        check_refund_change(&current, refund)?;
        if refund.status == RefundStatus::Succeeded && current.status != RefundStatus::Succeeded {
            let payment = rec
                .payments
                .iter_mut()
                .find(|p| p.id == refund.payment_id)
                .ok_or_else(|| Error::not_found("payment", refund.payment_id))?;
            payment.set_refunded(payment.refunded().checked_add(refund.amount)?);
            payment.version += 1;
            payment.updated_at = refund.updated_at;
        }
        let event = refund_change_event(&current, refund);
        rec.refunds[at] = refund.clone();
        self.record(refund.updated_at, event);
        Ok(())
    }

    async fn refunds_for_booking(&self, booking: BookingId) -> Result<Vec<Refund>> {
        Ok(self
            .read_booking(booking, |_, r| r.refunds.to_vec())
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use ems_core::testkit::{Fixture, TestStores};

    use super::*;

    /// A payment under another event's booking's own key waits while that
    /// event's shard is locked, then gets that booking's payment back.
    #[test]
    fn a_key_of_a_booking_in_a_locked_shard_waits_for_it() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let store = MemoryStore::new();
        let (f, first, second) = rt.block_on(async {
            let f = Fixture::new(TestStores::new(
                Arc::new(store.clone()),
                Arc::new(store.clone()),
            ))
            .await;
            let (e1, t1) = f.published_event(10, &[("GA", "10", 10)]).await;
            let (e2, t2) = f.published_event(10, &[("GA", "10", 10)]).await;
            let buyer = f.customer();
            let first = f.buy(&buyer, e1.id, t1[0].id, 1).await;
            let second = f.buy(&buyer, e2.id, t2[0].id, 1).await;
            (f, first, second)
        });
        let paid = first.payment.clone().expect("a payment");
        let mut taking =
            ems_core::booking::OpenCheckout::new(second.booking.clone(), f.clock_now()).payment;
        taking.idempotency_key = format!("booking-{}", first.booking.id);

        let shard = store
            .shard(first.booking.event_id)
            .expect("the event's shard");
        let guard = shard.lock();
        let inserting = {
            let store = store.clone();
            let handle = rt.handle().clone();
            std::thread::spawn(move || handle.block_on(store.insert_payment(&taking)))
        };
        // Not a wait for an event: time for the insert to have finished had
        // it not waited. It cannot finish while the lock is held, so this
        // never fails spuriously; at worst it passes without the insert
        // having started.
        std::thread::sleep(Duration::from_millis(50));
        assert!(!inserting.is_finished(), "it waits for the other shard");
        drop(guard);
        let answer = inserting.join().expect("no panic").expect("answered");
        assert_eq!(answer, paid, "the key's payment is the first booking's");
        let theirs = rt
            .block_on(store.payments_for_booking(second.booking.id))
            .expect("list");
        assert_eq!(theirs.len(), 1, "no second payment for the second booking");
    }
}
