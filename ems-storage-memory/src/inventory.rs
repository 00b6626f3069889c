use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ems_core::booking::{BookingReason, BookingStatus};
use ems_core::id::{EventId, HoldId, OrganizationId, UserId};
use ems_core::inventory::*;
use ems_core::outbox::DomainEvent;
use ems_core::{Error, Result};

use crate::state::{Events, HoldRec, HoldSet, Shard};
use crate::{HoldAt, MemoryStore, OWN};

#[async_trait]
impl InventoryStore for MemoryStore {
    async fn insert_tier(&self, tier: &TicketTier) -> Result<()> {
        let shard = self.shard_or_missing(tier.event_id)?;
        let mut s = shard.lock();
        check_new_tier(&s.config.event, &s.config.tiers, &s.config.shared, tier)?;
        s.config_mut().tiers.push(tier.clone());
        s.taken.push((QuotaKey::Tier(tier.id), 0));
        let at = s.config.event.updated_at;
        self.record(
            at,
            [DomainEvent::TierChanged {
                event_id: tier.event_id,
                tier_id: tier.id,
            }],
        );
        Ok(())
    }

    async fn update_tier(&self, tier: &TicketTier) -> Result<()> {
        let shard = self.shard_or_missing(tier.event_id)?;
        let mut s = shard.lock();
        let taken = s.taken(QuotaKey::Tier(tier.id));
        check_tier_change(&s.config.tiers, &s.config.shared, tier, taken)?;
        // Found before the config is copied for the change: an unknown
        // tier changes nothing.
        let i = s
            .config
            .tiers
            .iter()
            .position(|t| t.id == tier.id)
            .ok_or_else(|| Error::not_found("tier", tier.id))?;
        s.config_mut().tiers[i] = tier.clone();
        let at = s.config.event.updated_at;
        self.record(
            at,
            [DomainEvent::TierChanged {
                event_id: tier.event_id,
                tier_id: tier.id,
            }],
        );
        Ok(())
    }

    async fn tiers(&self, event: EventId) -> Result<Vec<TicketTier>> {
        Ok(self
            .shard(event)
            .map(|s| s.lock().config.tiers.clone())
            .unwrap_or_default())
    }

    async fn insert_shared_quota(&self, quota: &SharedQuota) -> Result<()> {
        let shard = self.shard_or_missing(quota.event_id)?;
        let mut s = shard.lock();
        if s.config.event.status.is_final() {
            return Err(Error::invalid_state(
                "event",
                quota.event_id,
                s.config.event.status,
                "add quota to",
            ));
        }
        s.config_mut().shared.push(quota.clone());
        s.taken.push((QuotaKey::Shared(quota.id), 0));
        let at = s.config.event.updated_at;
        self.record(
            at,
            [DomainEvent::QuotaAdded {
                event_id: quota.event_id,
                quota_id: quota.id,
            }],
        );
        Ok(())
    }

    async fn shared_quotas(&self, event: EventId) -> Result<Vec<SharedQuota>> {
        Ok(self
            .shard(event)
            .map(|s| s.lock().config.shared.clone())
            .unwrap_or_default())
    }

    async fn availability(&self, event: EventId, now: DateTime<Utc>) -> Result<EventAvailability> {
        let cell = self.cell_or_missing(event)?;
        let mut s = self.lock_at(cell, Some(now));
        let mut out = Events::new();
        s.expire_due(None, now, u32::MAX, &mut out);
        self.record(now, out);
        Ok(availability_of(
            &s.config.event,
            &s.config.tiers,
            &s.config.shared,
            &|k| s.taken(k),
            &|t| s.recent(t, now),
        ))
    }

    /// Prices the hold before taking the event's lock when its price cannot
    /// depend on what is taken (see [`plan_ignores_sales`]), from the shard's
    /// published config; under the lock that plan is used only if the config
    /// is still the one it was made from, and moved to the positions counted
    /// there. Otherwise (or when the early plan failed, so that the answer
    /// is the one the lock decides) the hold is planned under the lock. The
    /// hold is kept in the calling thread's lane once the event has lanes
    /// (see the crate docs).
    async fn try_hold(&self, request: &HoldRequest) -> Result<Hold> {
        self.place(request, true)
    }

    /// As `try_hold`, with the hold kept by the event's shard itself, where
    /// its booking is about to be: it need not move there from a lane.
    async fn try_hold_to_book(&self, request: &HoldRequest) -> Result<Hold> {
        self.place(request, false)
    }

    /// Grants a batch's holds in arrival order, taking each event's lock once
    /// for every run of requests of that event (a hot event's batch: once).
    async fn try_hold_batch(&self, requests: &[HoldRequest]) -> Vec<Result<Hold>> {
        let mut results = Vec::with_capacity(requests.len());
        for run in requests.chunk_by(|a, b| a.event_id == b.event_id) {
            let Some((number, cell)) = self.numbered_cell(run[0].event_id) else {
                results.extend(
                    run.iter()
                        .map(|r| Err(Error::not_found("event", r.event_id))),
                );
                continue;
            };
            let first = results.len();
            // A batch's holds are kept by the shard itself.
            let at = HoldAt {
                shard: number,
                lane: OWN,
            };
            let taken: Vec<Result<()>> = run.iter().map(|r| self.take_hold_id(r.id, at)).collect();
            let ours: Vec<bool> = taken.iter().map(Result::is_ok).collect();
            let mut s = self.lock_at(cell, Some(run[0].now));
            for (request, taken) in run.iter().zip(taken) {
                if s.lanes_due_by(request.now) {
                    drop(s);
                    s = self.lock_at(cell, Some(request.now));
                }
                // Each request's events carry its own instant.
                let mut out = Events::new();
                results
                    .push(taken.and_then(|()| {
                        self.try_hold_locked(&mut s, None, request, None, &mut out)
                    }));
                self.record(request.now, out);
            }
            drop(s);
            // Ids this batch took for holds that failed are given back.
            for ((request, result), ours) in run.iter().zip(&results[first..]).zip(ours) {
                if ours && result.is_err() {
                    self.inner.holds.remove(&request.id);
                }
            }
        }
        results
    }

    async fn hold(&self, id: HoldId) -> Result<Option<Hold>> {
        Ok(self.lock_hold_at(&id, None).and_then(|(lane, s)| {
            lane.as_deref()
                .unwrap_or(&s.own)
                .holds
                .get(&id)
                .map(|h| h.hold(&s.config.event))
        }))
    }

    /// Copies three ids under the shard's lock, where `hold` rebuilds the
    /// whole hold.
    async fn hold_owner(&self, id: HoldId) -> Result<Option<HoldOwner>> {
        Ok(self.lock_hold_at(&id, None).and_then(|(lane, s)| {
            let set = lane.as_deref().unwrap_or(&s.own);
            set.holds.get(&id).map(|h| HoldOwner {
                event_id: s.config.event.id,
                organization: s.config.event.organization,
                customer: h.customer,
            })
        }))
    }

    async fn release_hold(&self, id: HoldId, now: DateTime<Utc>) -> Result<Hold> {
        self.release_one(id, None, now)
    }

    /// Checks the customer and releases under one lock.
    async fn release_customer_hold(
        &self,
        id: HoldId,
        customer: UserId,
        now: DateTime<Utc>,
    ) -> Result<Hold> {
        self.release_one(id, Some(customer), now)
    }

    /// Releases a batch's holds in order, each as `release_hold` does.
    async fn release_hold_batch(&self, requests: &[HoldRelease]) -> Vec<Result<Hold>> {
        // Each under its own hold's locks: a batch's holds may sit in
        // different lanes.
        requests
            .iter()
            .map(|r| self.release_one(r.hold_id, None, r.now))
            .collect()
    }

    async fn sweep_expired(&self, now: DateTime<Utc>, limit: u32) -> Result<u32> {
        let mut total = 0;
        for (_, cell) in self.inner.numbered.iter() {
            if total >= limit {
                break;
            }
            total += self.sweep(cell, now, limit - total);
        }
        Ok(total)
    }

    async fn purge_ended_holds(&self, created_before: DateTime<Utc>, limit: u32) -> Result<u32> {
        let mut purged = 0u32;
        for (_, cell) in self.inner.numbered.iter() {
            // The shard's own set, then each lane's (an ended hold is never
            // booked, so it stays where it ended).
            purged += self.purge(&mut cell.lock.lock().own, created_before, limit - purged);
            for lane in cell.lanes() {
                if purged >= limit {
                    break;
                }
                purged += self.purge(&mut lane.0.lock(), created_before, limit - purged);
            }
            if purged >= limit {
                break;
            }
        }
        Ok(purged)
    }
}

impl MemoryStore {
    /// `try_hold` (`in_lane`) or `try_hold_to_book`.
    fn place(&self, request: &HoldRequest, in_lane: bool) -> Result<Hold> {
        let (number, cell) = self.numbered_cell_or_missing(request.event_id)?;
        let config = cell.published.load();
        let early = plan_ignores_sales(&config.tiers, request)
            .then(|| {
                plan_hold(
                    &config.event,
                    &config.tiers,
                    request,
                    &|_| 0,
                    &|_| [0; 4],
                    None,
                )
                .ok()
            })
            .flatten()
            .map(|plan| EarlyHold::of(plan, request, config.event.organization));
        // Lanes only pay off once threads take turns at the event's lock.
        let in_lane = in_lane && (!cell.lanes().is_empty() || cell.lock.has_waited());
        let lane = if in_lane { crate::my_lane() } else { OWN };
        self.take_hold_id(
            request.id,
            HoldAt {
                shard: number,
                lane,
            },
        )?;
        let (mut l, mut s) = if in_lane {
            let (l, s) = self.lock_lane_at(cell, lane, Some(request.now));
            (Some(l), s)
        } else {
            (None, self.lock_at(cell, Some(request.now)))
        };
        let current = Arc::ptr_eq(&config, &s.config);
        if !current {
            // The config changed since it was published: publish it now.
            cell.published.store(Arc::clone(&s.config));
        }
        let mut out = Events::new();
        let hold = self.try_hold_locked(
            &mut s,
            l.as_deref_mut(),
            request,
            early.filter(|_| current),
            &mut out,
        );
        self.record(request.now, out);
        drop(s);
        drop(l);
        if hold.is_err() {
            self.inner.holds.remove(&request.id);
        }
        hold
    }

    /// Forgets the holds of `set` that ended without a booking and were
    /// created before `created_before` (at most `limit`); returns how many.
    fn purge(&self, set: &mut HoldSet, created_before: DateTime<Utc>, limit: u32) -> u32 {
        let mut purged = 0;
        // Holds end roughly in creation order; stop at the first one too young.
        while purged < limit {
            let Some(&(created, id)) = set.ended.front() else {
                break;
            };
            if created >= created_before {
                break;
            }
            set.ended.pop_front();
            // An ended hold never gets a booking, so it is still forgettable.
            if set.holds.remove(&id).is_some() {
                self.inner.holds.remove(&id);
                purged += 1;
            }
        }
        purged
    }
}

/// `release_hold` under the locks of the hold's lane (`None`: kept by the
/// shard itself) and shard, but for reading the hold back.
fn release_locked(
    s: &mut Shard,
    lane: Option<&mut HoldSet>,
    id: HoldId,
    now: DateTime<Utc>,
    out: &mut Events,
) -> Result<()> {
    s.expire_due(None, now, u32::MAX, out);
    let status = lane
        .as_deref()
        .unwrap_or(&s.own)
        .holds
        .get(&id)
        .ok_or_else(|| Error::not_found("hold", id))?
        .status;
    match status {
        HoldStatus::Active => s.end_hold(
            lane,
            id,
            HoldStatus::Released,
            Some((BookingStatus::Failed, BookingReason::Abandoned)),
            now,
            out,
        ),
        HoldStatus::Released | HoldStatus::Expired => {}
        other => return Err(Error::invalid_state("hold", id, other, "release")),
    }
    Ok(())
}

impl MemoryStore {
    /// Takes hold id `id` for shard `number` in the store's hold index, or
    /// refuses it as taken: before the event's lock, so that lock is never
    /// held across the index's own. A hold that then fails gives its id back
    /// (until then, a read of the id finds no hold in the shard, as before).
    fn take_hold_id(&self, id: HoldId, at: HoldAt) -> Result<()> {
        let taken = || Error::already_exists("hold", "id", id);
        match self.inner.holds.entry(id) {
            dashmap::Entry::Occupied(_) => Err(taken()),
            // Checked while the entry is held: a hold moving to
            // `booked_holds` is entered there before it leaves `holds`.
            dashmap::Entry::Vacant(_) if self.is_booked(&id) => Err(taken()),
            dashmap::Entry::Vacant(v) => {
                v.insert(at);
                Ok(())
            }
        }
    }

    /// `release_hold`, wherever the hold lives; with `customer`, only a hold
    /// of theirs (another's is `NotFound`), checked under the same lock.
    fn release_one(
        &self,
        id: HoldId,
        customer: Option<UserId>,
        now: DateTime<Utc>,
    ) -> Result<Hold> {
        let (mut lane, mut s) = self
            .lock_hold_at(&id, Some(now))
            .ok_or_else(|| Error::not_found("hold", id))?;
        let set = lane.as_deref().unwrap_or(&s.own);
        if customer.is_some_and(|c| set.holds.get(&id).is_some_and(|h| h.customer != c)) {
            return Err(Error::not_found("hold", id));
        }
        let mut out = Events::new();
        let released = release_locked(&mut s, lane.as_deref_mut(), id, now, &mut out);
        self.record(now, out);
        let (event, organization) = (s.config.event.id, s.config.event.organization);
        match lane {
            // A lane's hold is read back with the shard's lock released.
            Some(lane) => {
                drop(s);
                released.map(|()| lane.holds[&id].hold_of(event, organization))
            }
            None => released.map(|()| s.own.holds[&id].hold_of(event, organization)),
        }
    }

    /// `try_hold` under the lock of the event's shard (and of `lane`, which
    /// is to keep the hold; `None`: the shard keeps it); the domain events it
    /// causes go to `out`. `early` is the request's plan made with nothing
    /// taken from the shard's current config, if there is one (no coupon, a
    /// price that does not read sales); otherwise it is planned here.
    fn try_hold_locked(
        &self,
        s: &mut Shard,
        lane: Option<&mut HoldSet>,
        request: &HoldRequest,
        early: Option<EarlyHold>,
        out: &mut Events,
    ) -> Result<Hold> {
        s.expire_due(None, request.now, u32::MAX, out);
        // The coupon book (shared by every event) is locked only for orders with a
        // coupon: after the shard, and kept until the use is counted, so two holds
        // racing for a coupon's last use get it once.
        let coupons = request
            .coupon
            .as_ref()
            .map(|_| std::sync::Arc::clone(&s.coupons));
        let mut book = coupons.as_ref().map(|c| c.lock());
        let coupon = match (&request.coupon, book.as_deref()) {
            (Some(code), Some(book)) => Some(crate::pricing::resolve(
                book,
                s.config.event.organization,
                code,
                request.customer,
            )?),
            _ => None,
        };
        let (hold, demand, rec) = match early {
            Some(mut early) => {
                let taken = |tier| s.taken(QuotaKey::Tier(tier));
                early.hold.quote.shift_positions(taken);
                early.rec.shift_positions(taken);
                check_capacity(&early.demand, |k| s.available(k))?;
                (early.hold, early.demand, early.rec)
            }
            None => {
                let plan = plan_hold(
                    &s.config.event,
                    &s.config.tiers,
                    request,
                    &|k| s.taken(k),
                    &|t| s.recent(t, request.now),
                    coupon,
                )?;
                check_capacity(&plan.demand, |k| s.available(k))?;
                let coupon = coupon.map(|c| c.id);
                if let (Some(id), Some(book)) = (coupon, book.as_mut()) {
                    book.take(id, request.customer);
                }
                let (hold, demand) = plan.into_hold(request, s.config.event.organization, coupon);
                let rec = Box::new(HoldRec::of(&hold));
                (hold, demand, rec)
            }
        };
        drop(book);
        s.take(&demand);
        for item in &request.items {
            s.note_sale(item.tier_id, item.quantity, request.now);
        }
        match lane {
            Some(lane) => {
                s.lane_holds_until(hold.expires_at);
                lane.insert(rec);
            }
            None => s.own.insert(rec),
        }
        out.push(hold.placed_event());
        Ok(hold)
    }
}

/// A hold made before its event's lock (see `try_hold`), from a plan made
/// with nothing taken: the hold, its record and the units it takes, all at
/// positions from 0 until moved to the shard's counts under the lock.
struct EarlyHold {
    hold: Hold,
    rec: Box<HoldRec>,
    demand: Demand,
}

impl EarlyHold {
    fn of(plan: HoldPlan, request: &HoldRequest, organization: OrganizationId) -> Self {
        let (hold, demand) = plan.into_hold(request, organization, None);
        let rec = Box::new(HoldRec::of(&hold));
        Self { hold, rec, demand }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::Duration;
    use ems_core::booking::{BookingDraft, BookingStore};
    use ems_core::id::{BookingId, PaymentId};
    use ems_core::outbox::OutboxStore;
    use ems_core::testkit::{Fixture, TestStores};
    use ems_core::Actor;

    use super::*;

    /// How many of `event`'s lanes keep a hold, and how many holds they keep.
    fn lanes_in_use(store: &MemoryStore, event: EventId) -> (usize, usize) {
        let cell = store.cell(event).expect("the event's shard");
        let sizes: Vec<usize> = cell
            .lanes()
            .iter()
            .map(|l| l.0.lock().holds.len())
            .collect();
        (sizes.iter().filter(|n| **n > 0).count(), sizes.iter().sum())
    }

    /// Holds placed on three threads, each on a thread of its own, so in
    /// lanes of their own: what a store at one instant must be, whichever
    /// thread asks.
    #[test]
    fn holds_kept_in_other_threads_lanes_expire_book_release_and_purge_as_one_event() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let store = MemoryStore::new();
        let f = rt.block_on(Fixture::new(TestStores::new(
            Arc::new(store.clone()),
            Arc::new(store.clone()),
        )));
        let (event, tiers) = rt.block_on(f.published_event(100, &[("GA", "10", 100)]));
        // As if threads had taken turns at the event's lock already.
        store.cell(event.id).expect("the event's shard").lane(0);
        let tier = tiers[0].id;
        let buyer = f.customer();
        let place = |quantity: u32| -> Vec<Hold> {
            std::thread::scope(|scope| {
                let threads: Vec<_> = (0..3)
                    .map(|_| {
                        let (ems, handle, buyer) = (&f.ems, rt.handle(), &buyer);
                        scope.spawn(move || {
                            let items = [HoldItem {
                                tier_id: tier,
                                quantity,
                            }];
                            handle
                                .block_on(ems.place_hold(
                                    buyer,
                                    event.id,
                                    &items,
                                    HoldOptions::default(),
                                ))
                                .expect("held")
                        })
                    })
                    .collect();
                threads
                    .into_iter()
                    .map(|t| t.join().expect("no panic"))
                    .collect()
            })
        };

        // Lapsed: an availability read at a later instant expires every
        // lane's holds first, and the log says so.
        let first = place(2);
        let (lanes, holds) = lanes_in_use(&store, event.id);
        assert!(lanes >= 2, "threads hold in lanes of their own ({lanes})");
        assert_eq!(holds, 3);
        assert_eq!(rt.block_on(f.available(event.id, tier)), 94);
        f.clock.advance(Duration::hours(1));
        assert_eq!(rt.block_on(f.available(event.id, tier)), 100);
        for h in &first {
            let hold = rt.block_on(store.hold(h.id)).unwrap().expect("kept");
            assert_eq!(hold.status, HoldStatus::Expired);
        }
        let log = rt.block_on(store.read_events(None, 10_000)).unwrap();
        let expired = log
            .iter()
            .filter(|e| matches!(e.event, DomainEvent::HoldExpired { hold_id, .. } if first.iter().any(|h| h.id == hold_id)))
            .count();
        assert_eq!(expired, 3);

        // Booked from another thread than the one that placed it: the hold
        // leaves its lane, and the booking reads its lines from it.
        let second = place(1);
        let draft = BookingDraft {
            booking_id: BookingId::new(),
            payment_id: PaymentId::new(),
            customer: second[0].customer,
            idempotency_key: "lanes-1".into(),
            gateway: "fake".into(),
            now: f.clock_now(),
        };
        let opening = draft.open_on(&second[0]);
        let booked = rt
            .block_on(store.create_booking(&opening.booking))
            .expect("booked");
        assert_eq!(booked, opening.booking);
        let read = rt
            .block_on(store.booking(booked.id))
            .unwrap()
            .expect("stored");
        assert_eq!(read, opening.booking);
        let hold = rt
            .block_on(store.hold(second[0].id))
            .unwrap()
            .expect("kept");
        assert_eq!(hold.booking_id, Some(booked.id));
        // The lapsed three stay (until purged) beside the two live ones.
        assert_eq!(
            lanes_in_use(&store, event.id).1,
            5,
            "the booked hold left its lane"
        );
        // Released from this thread: each hold from whichever lane keeps it.
        for h in &second[1..] {
            let released = rt
                .block_on(store.release_hold(h.id, f.clock_now()))
                .unwrap();
            assert_eq!(released.status, HoldStatus::Released);
            assert_eq!(released.lines, h.lines);
        }
        assert_eq!(rt.block_on(f.available(event.id, tier)), 99);

        // Ended holds in any lane are forgotten by a purge; the booked one
        // is kept.
        let ended = first.len() + 2;
        let purged = rt
            .block_on(store.purge_ended_holds(f.clock_now() + Duration::seconds(1), 100))
            .unwrap();
        assert_eq!(purged as usize, ended);
        for h in first.iter().chain(&second[1..]) {
            assert_eq!(rt.block_on(store.hold(h.id)).unwrap(), None);
        }
        assert_eq!(lanes_in_use(&store, event.id).1, 0);
        assert!(rt.block_on(store.hold(second[0].id)).unwrap().is_some());

        // A checkout's hold is placed with the bookings, never in a lane.
        let bought = rt.block_on(f.buy(&buyer, event.id, tier, 1));
        assert_eq!(
            bought.booking.status,
            ems_core::booking::BookingStatus::Confirmed
        );
        assert_eq!(lanes_in_use(&store, event.id).1, 0);

        // Cancelling the event releases the holds of every lane (and the
        // booked one, whose booking fails).
        let third = place(1);
        let event = rt
            .block_on(f.ems.event(&Actor::System, event.id))
            .expect("event");
        let cancelled = rt
            .block_on(f.ems.cancel_event(&f.organizer, event.id, event.version))
            .expect("cancelled");
        assert_eq!(cancelled.released_holds, 4);
        assert_eq!(cancelled.failed_bookings, vec![booked.id]);
        for h in &third {
            let hold = rt.block_on(store.hold(h.id)).unwrap().expect("kept");
            assert_eq!(hold.status, HoldStatus::Released);
        }
    }
}
