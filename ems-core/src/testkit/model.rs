//! The model test: random sequences of hold / checkout / pending payment / webhook
//! / release / clock advance / sweep / cancellation against a backend and a
//! simple oracle. After every step the backend's counters and money must agree
//! with the oracle's.

use std::future::Future;

use chrono::Duration;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use super::fixture::Fixture;
use super::TestStores;
use crate::booking::BookingStatus;
use crate::id::{BookingId, HoldId, TierId};
use crate::inventory::{HoldItem, HoldOptions, QuotaKey};
use crate::money::{Currency, Money};
use crate::page::PageRequest;
use crate::payment::{FakeBehavior, PaymentStatus, RefundStatus};
use crate::{Actor, Error};

/// One step of a model run.
#[derive(Debug, Clone)]
#[allow(missing_docs)] // fields: tier index, quantity, index into the pending/held/confirmed list
pub enum Op {
    /// Place a bare hold.
    Hold { tier: usize, qty: u32 },
    /// Full checkout with an immediately successful payment.
    Buy { tier: usize, qty: u32 },
    /// Checkout whose payment stays pending.
    BuyPending { tier: usize, qty: u32 },
    /// Checkout whose payment is declined.
    BuyDeclined { tier: usize, qty: u32 },
    /// Deliver the outcome of the `n`-th pending payment.
    Settle { n: usize, succeed: bool },
    /// Release the `n`-th bare hold.
    Release { n: usize },
    /// Cancel the `n`-th confirmed booking (organizer, full refund).
    Cancel { n: usize },
    /// Move the clock.
    Advance { minutes: i64 },
    /// Run the sweeper.
    Sweep,
}

fn op() -> impl Strategy<Value = Op> {
    let tier = 0usize..2;
    let qty = 1u32..4;
    prop_oneof![
        3 => (tier.clone(), qty.clone()).prop_map(|(tier, qty)| Op::Hold { tier, qty }),
        3 => (tier.clone(), qty.clone()).prop_map(|(tier, qty)| Op::Buy { tier, qty }),
        3 => (tier.clone(), qty.clone()).prop_map(|(tier, qty)| Op::BuyPending { tier, qty }),
        1 => (tier, qty).prop_map(|(tier, qty)| Op::BuyDeclined { tier, qty }),
        3 => (0usize..8, any::<bool>()).prop_map(|(n, succeed)| Op::Settle { n, succeed }),
        2 => (0usize..8).prop_map(|n| Op::Release { n }),
        2 => (0usize..8).prop_map(|n| Op::Cancel { n }),
        2 => (1i64..9).prop_map(|minutes| Op::Advance { minutes }),
        1 => Just(Op::Sweep),
    ]
}

const TIER_CAPS: [u32; 2] = [6, 5];
const EVENT_CAP: u32 = 8;
const TTL_MIN: i64 = 10;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Held {
    Active { expires: i64 },
    Done,
}

#[derive(Debug, Default)]
struct Oracle {
    now: i64,
    taken: [u32; 2],
    /// (tier, qty, state) per hold the oracle knows.
    holds: Vec<(usize, u32, Held)>,
    /// Money kept by the seller: paid minus refunded, in cents.
    net_cents: i64,
}

impl Oracle {
    fn expire(&mut self) {
        let now = self.now;
        for i in 0..self.holds.len() {
            if let (tier, qty, Held::Active { expires }) = self.holds[i] {
                if now >= expires {
                    self.taken[tier] -= qty;
                    self.holds[i].2 = Held::Done;
                }
            }
        }
    }
    fn event_taken(&self) -> u32 {
        self.taken.iter().sum()
    }
    fn fits(&self, tier: usize, qty: u32) -> bool {
        self.taken[tier] + qty <= TIER_CAPS[tier] && self.event_taken() + qty <= EVENT_CAP
    }
    fn take(&mut self, tier: usize, qty: u32) -> usize {
        self.taken[tier] += qty;
        self.holds.push((
            tier,
            qty,
            Held::Active {
                expires: self.now + TTL_MIN,
            },
        ));
        self.holds.len() - 1
    }
    fn end(&mut self, hold: usize) {
        if let (tier, qty, Held::Active { .. }) = self.holds[hold] {
            self.taken[tier] -= qty;
            self.holds[hold].2 = Held::Done;
        }
    }
}

struct World {
    f: Fixture,
    event: crate::id::EventId,
    tiers: [TierId; 2],
    price_cents: [i64; 2],
    oracle: Oracle,
    bare: Vec<(HoldId, usize, Actor)>,
    /// (booking, payment reference, oracle hold) of pending payments.
    pending: Vec<(BookingId, String, usize, usize, u32)>,
    /// (booking, oracle tier, qty) of confirmed bookings.
    confirmed: Vec<(BookingId, usize, u32)>,
    keys: u64,
}

impl World {
    fn key(&mut self) -> String {
        self.keys += 1;
        format!("k{}", self.keys)
    }

    async fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let f = &self.f;
        match *op {
            Op::Hold { tier, qty } => {
                self.oracle.expire();
                let buyer = f.customer();
                let r = f
                    .ems
                    .place_hold(
                        &buyer,
                        self.event,
                        &[HoldItem {
                            tier_id: self.tiers[tier],
                            quantity: qty,
                        }],
                        HoldOptions::default(),
                    )
                    .await;
                match r {
                    Ok(h) => {
                        prop_assert!(
                            self.oracle.fits(tier, qty),
                            "backend held units the oracle says are gone"
                        );
                        let idx = self.oracle.take(tier, qty);
                        self.bare.push((h.id, idx, buyer));
                    }
                    Err(Error::SoldOut { .. }) => prop_assert!(
                        !self.oracle.fits(tier, qty),
                        "backend refused units the oracle has"
                    ),
                    Err(e) => return Err(TestCaseError::fail(format!("unexpected {e:?}"))),
                }
            }
            Op::Buy { tier, qty }
            | Op::BuyPending { tier, qty }
            | Op::BuyDeclined { tier, qty } => {
                self.oracle.expire();
                let behavior = match op {
                    Op::Buy { .. } => FakeBehavior::Succeed,
                    Op::BuyPending { .. } => FakeBehavior::Pending,
                    _ => FakeBehavior::Decline("no".into()),
                };
                f.gateway.set_default(behavior.clone());
                let key = self.key();
                let f = &self.f;
                let r = f
                    .ems
                    .checkout(
                        &f.customer(),
                        f.order(self.event, self.tiers[tier], qty, &key),
                    )
                    .await;
                match r {
                    Ok(c) => {
                        prop_assert!(
                            self.oracle.fits(tier, qty),
                            "backend sold units the oracle says are gone"
                        );
                        let idx = self.oracle.take(tier, qty);
                        match behavior {
                            FakeBehavior::Succeed => {
                                prop_assert_eq!(c.booking.status, BookingStatus::Confirmed);
                                self.oracle.holds[idx].2 = Held::Done; // sold: stays taken
                                self.oracle.net_cents += self.price_cents[tier] * i64::from(qty);
                                self.confirmed.push((c.booking.id, tier, qty));
                            }
                            FakeBehavior::Pending => {
                                prop_assert_eq!(c.booking.status, BookingStatus::Pending);
                                let reference = c
                                    .payment
                                    .and_then(|p| p.reference)
                                    .ok_or_else(|| TestCaseError::fail("no reference"))?;
                                self.pending.push((c.booking.id, reference, idx, tier, qty));
                            }
                            _ => {
                                prop_assert_eq!(c.booking.status, BookingStatus::Failed);
                                self.oracle.end(idx);
                            }
                        }
                    }
                    Err(Error::SoldOut { .. }) => {
                        prop_assert!(
                            !self.oracle.fits(tier, qty),
                            "backend refused units the oracle has"
                        );
                    }
                    Err(e) => return Err(TestCaseError::fail(format!("unexpected {e:?}"))),
                }
            }
            Op::Settle { n, succeed } => {
                if self.pending.is_empty() {
                    return Ok(());
                }
                let (booking, reference, idx, tier, qty) =
                    self.pending.remove(n % self.pending.len());
                self.oracle.expire();
                let hook = f.gateway.settle(&reference, succeed);
                let c = f
                    .ems
                    .handle_webhook("fake", &hook)
                    .await
                    .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
                let c = c.ok_or_else(|| TestCaseError::fail("no checkout"))?;
                let active = matches!(self.oracle.holds[idx].2, Held::Active { .. });
                if !succeed {
                    self.oracle.end(idx);
                    prop_assert_ne!(c.booking.status, BookingStatus::Confirmed);
                } else if active {
                    self.oracle.holds[idx].2 = Held::Done;
                    self.oracle.net_cents += self.price_cents[tier] * i64::from(qty);
                    prop_assert_eq!(c.booking.status, BookingStatus::Confirmed);
                    self.confirmed.push((booking, tier, qty));
                } else if self.oracle.fits(tier, qty) {
                    self.oracle.taken[tier] += qty;
                    self.oracle.net_cents += self.price_cents[tier] * i64::from(qty);
                    prop_assert_eq!(
                        c.booking.status,
                        BookingStatus::Confirmed,
                        "a late payment re-acquires free units"
                    );
                    self.confirmed.push((booking, tier, qty));
                } else {
                    prop_assert_eq!(
                        c.booking.status,
                        BookingStatus::Unfulfilled,
                        "a late payment without units is refunded"
                    );
                }
            }
            Op::Release { n } => {
                if self.bare.is_empty() {
                    return Ok(());
                }
                let (hold, idx, buyer) = self.bare.remove(n % self.bare.len());
                self.oracle.expire();
                f.ems
                    .release_hold(&buyer, hold)
                    .await
                    .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
                self.oracle.end(idx);
            }
            Op::Cancel { n } => {
                if self.confirmed.is_empty() {
                    return Ok(());
                }
                let (booking, tier, qty) = self.confirmed.remove(n % self.confirmed.len());
                f.ems
                    .cancel_booking(&f.organizer, booking)
                    .await
                    .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
                self.oracle.taken[tier] -= qty;
                self.oracle.net_cents -= self.price_cents[tier] * i64::from(qty);
            }
            Op::Advance { minutes } => {
                f.clock.advance(Duration::minutes(minutes));
                self.oracle.now += minutes;
            }
            Op::Sweep => {
                f.ems
                    .sweep_expired(&Actor::System, 1000)
                    .await
                    .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            }
        }
        self.check().await
    }

    async fn check(&mut self) -> Result<(), TestCaseError> {
        self.oracle.expire();
        let a = self
            .f
            .ems
            .availability(&self.f.organizer, self.event)
            .await
            .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        for (i, tier) in self.tiers.iter().enumerate() {
            let q = a
                .quotas
                .iter()
                .find(|q| q.quota == QuotaKey::Tier(*tier))
                .ok_or_else(|| TestCaseError::fail("tier quota"))?;
            prop_assert_eq!(q.taken, self.oracle.taken[i], "tier {} taken", i);
            prop_assert!(q.taken <= q.capacity);
        }
        let ev = a
            .event_quota()
            .ok_or_else(|| TestCaseError::fail("event quota"))?;
        prop_assert_eq!(ev.taken, self.oracle.event_taken(), "event taken");
        prop_assert!(ev.taken <= EVENT_CAP, "never oversold");
        // Money: what payments kept equals the oracle, and equals the confirmed bookings' totals.
        let bookings = self
            .f
            .ems
            .bookings_of_event(&self.f.organizer, self.event, PageRequest::first(500))
            .await
            .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        let mut kept = Money::zero(Currency::EUR);
        let mut confirmed_total = Money::zero(Currency::EUR);
        let mut sold_units = 0;
        for b in &bookings.items {
            let (payments, refunds) = self
                .f
                .ems
                .payments(&self.f.organizer, b.id)
                .await
                .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            for p in payments
                .iter()
                .filter(|p| p.status == PaymentStatus::Succeeded)
            {
                kept = kept
                    .checked_add(p.amount)
                    .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            }
            for r in refunds
                .iter()
                .filter(|r| r.status == RefundStatus::Succeeded)
            {
                kept = kept
                    .checked_sub(r.amount)
                    .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            }
            if b.status == BookingStatus::Confirmed {
                confirmed_total = confirmed_total
                    .checked_add(b.total)
                    .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
                sold_units += b.quantity();
            }
        }
        prop_assert_eq!(
            kept,
            Money::from_minor(self.oracle.net_cents, Currency::EUR),
            "money kept"
        );
        prop_assert_eq!(
            kept,
            confirmed_total,
            "money kept equals confirmed bookings"
        );
        let held_units: u32 = self
            .oracle
            .holds
            .iter()
            .filter(|h| matches!(h.2, Held::Active { .. }))
            .map(|h| h.1)
            .sum();
        prop_assert_eq!(sold_units + held_units, ev.taken, "taken = sold + held");
        Ok(())
    }
}

/// Runs `cases` random operation sequences against stores from `factory`.
pub fn run_model_test<F, Fut>(factory: F, cases: u32)
where
    F: Fn() -> Fut,
    Fut: Future<Output = TestStores>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a test runtime starts");
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&proptest::collection::vec(op(), 1..40), |ops| {
        rt.block_on(async {
            let f = Fixture::new(factory().await).await;
            let (event, tiers) = f
                .published_event(
                    EVENT_CAP,
                    &[("A", "10", TIER_CAPS[0]), ("B", "4.25", TIER_CAPS[1])],
                )
                .await;
            let mut world = World {
                f,
                event: event.id,
                tiers: [tiers[0].id, tiers[1].id],
                price_cents: [1000, 425],
                oracle: Oracle::default(),
                bare: Vec::new(),
                pending: Vec::new(),
                confirmed: Vec::new(),
                keys: 0,
            };
            for op in &ops {
                world.step(op).await?;
            }
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("model test failed: {e}");
    }
}
