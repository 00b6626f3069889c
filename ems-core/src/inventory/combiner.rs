//! The hold combiner: concurrent holds of one event are reserved in batches.
//!
//! While a batch of an event is with the store, the event's next requests
//! queue; when it returns, everything queued becomes the next batch (natural
//! batching, as in group commit: no timer, and a quiet event sends each request
//! alone at once). The store grants a batch in arrival order with
//! [`InventoryStore::try_hold_batch`], so every request gets exactly the answer
//! it would have got alone at its place in the line. The combiner only
//! amortizes: the store's conditional write still decides, so any number of
//! processes, each with its own combiner, never oversell.
//!
//! A caller that gives up (drops its future) while queued leaves the queue
//! before the next batch forms; one that gives up while its batch is with the
//! store gets its hold released as soon as the batch returns, so no units leak.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Hold, HoldRelease, HoldRequest, InventoryStore};
use crate::batch::{BatchOp, Combiner};
use crate::id::{EventId, HoldId};
use crate::{Result, Store};

/// What the combiner needs of a store.
#[async_trait]
pub(crate) trait BatchTarget: Send + Sync + 'static {
    async fn try_hold(&self, request: &HoldRequest) -> Result<Hold>;
    async fn try_hold_batch(&self, requests: &[HoldRequest]) -> Vec<Result<Hold>>;
    async fn release_hold(&self, id: HoldId, now: DateTime<Utc>) -> Result<Hold>;
}

#[async_trait]
impl BatchTarget for Arc<dyn Store> {
    async fn try_hold(&self, request: &HoldRequest) -> Result<Hold> {
        InventoryStore::try_hold(&**self, request).await
    }
    async fn try_hold_batch(&self, requests: &[HoldRequest]) -> Vec<Result<Hold>> {
        InventoryStore::try_hold_batch(&**self, requests).await
    }
    async fn release_hold(&self, id: HoldId, now: DateTime<Utc>) -> Result<Hold> {
        InventoryStore::release_hold(&**self, id, now).await
    }
}

/// Whether holds (and the checkout steps after them) are batched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum HoldBatching {
    /// As the store prefers ([`InventoryStore::prefers_hold_batching`]): on for
    /// the database stores, off for the in-memory one. The default.
    #[default]
    Auto,
    /// Always batch.
    On,
    /// Never batch: every hold is its own store call.
    Off,
}

/// Holds of one event, batched.
pub(crate) struct HoldOp(Arc<dyn BatchTarget>);

#[async_trait]
impl BatchOp for HoldOp {
    type Key = EventId;
    type Request = HoldRequest;
    type Item = Hold;

    fn key(&self, request: &HoldRequest) -> EventId {
        request.event_id
    }
    async fn one(&self, request: &HoldRequest) -> Result<Hold> {
        self.0.try_hold(request).await
    }
    async fn batch(&self, requests: &[HoldRequest]) -> Vec<Result<Hold>> {
        self.0.try_hold_batch(requests).await
    }
    async fn abandoned(&self, request: &HoldRequest, hold: Hold) {
        // Its caller left while the batch was out: give the units back.
        // Should that fail, the hold still lapses at its expiry.
        let _ = self.0.release_hold(hold.id, request.now).await;
    }
}

/// Releases of one event's holds, batched.
pub(crate) struct ReleaseOp(pub(crate) Arc<dyn Store>);

#[async_trait]
impl BatchOp for ReleaseOp {
    type Key = EventId;
    type Request = HoldRelease;
    type Item = Hold;

    fn key(&self, request: &HoldRelease) -> EventId {
        request.event_id
    }
    async fn one(&self, request: &HoldRelease) -> Result<Hold> {
        InventoryStore::release_hold(&*self.0, request.hold_id, request.now).await
    }
    async fn batch(&self, requests: &[HoldRelease]) -> Vec<Result<Hold>> {
        InventoryStore::release_hold_batch(&*self.0, requests).await
    }
}

/// Per-event queues of holds over one store.
#[derive(Debug)]
pub(crate) struct HoldCombiner(Combiner<HoldOp>);

impl HoldCombiner {
    /// A combiner sending at most `max_batch` requests per store call.
    pub(crate) fn new(store: Arc<dyn Store>, max_batch: usize) -> Self {
        Self::over(Arc::new(store), max_batch)
    }

    fn over(store: Arc<dyn BatchTarget>, max_batch: usize) -> Self {
        Self(Combiner::new(HoldOp(store), max_batch))
    }

    /// Reserves `request` as part of the event's next batch.
    pub(crate) async fn hold(&self, request: HoldRequest) -> Result<Hold> {
        self.0.run(request).await
    }

    #[cfg(test)]
    fn is_idle(&self) -> bool {
        self.0.is_idle()
    }
}

/// Reserves `requests` one after the other in order: the semantics every
/// [`InventoryStore::try_hold_batch`] must match.
pub(crate) async fn sequential<S: InventoryStore + ?Sized>(
    store: &S,
    requests: &[HoldRequest],
) -> Vec<Result<Hold>> {
    let mut out = Vec::with_capacity(requests.len());
    for r in requests {
        out.push(store.try_hold(r).await);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use chrono::TimeZone;
    use parking_lot::Mutex;

    use crate::Error;

    use super::*;
    use crate::id::{OrganizationId, TierId, UserId};
    use crate::inventory::{HoldItem, HoldStatus};
    use crate::money::{Currency, Money};
    use crate::pricing::Quote;

    /// One quota of `capacity` units; every batch takes `delay` at the "server".
    struct Counter {
        capacity: u32,
        taken: Mutex<(u32, HashMap<HoldId, u32>)>,
        batches: AtomicU32,
        largest: AtomicU32,
        delay: Duration,
    }

    impl Counter {
        fn new(capacity: u32, delay_ms: u64) -> Arc<Self> {
            Arc::new(Self {
                capacity,
                taken: Mutex::new((0, HashMap::new())),
                batches: AtomicU32::new(0),
                largest: AtomicU32::new(0),
                delay: Duration::from_millis(delay_ms),
            })
        }

        fn taken(&self) -> u32 {
            self.taken.lock().0
        }

        fn grant(&self, r: &HoldRequest) -> Result<Hold> {
            let n: u32 = r.items.iter().map(|i| i.quantity).sum();
            let mut t = self.taken.lock();
            if t.0 + n > self.capacity {
                return Err(Error::SoldOut {
                    quota: "event".into(),
                    requested: n,
                    available: self.capacity - t.0,
                });
            }
            t.0 += n;
            t.1.insert(r.id, n);
            let zero = Money::zero(Currency::EUR);
            Ok(Hold {
                id: r.id,
                event_id: r.event_id,
                organization: OrganizationId::new(),
                customer: r.customer,
                lines: Vec::new(),
                quote: Quote {
                    currency: Currency::EUR,
                    lines: Vec::new(),
                    coupon: None,
                    order_fee: zero,
                    order_fee_tax: zero,
                    tax_mode: None,
                    total: zero,
                },
                total: zero,
                status: HoldStatus::Active,
                booking_id: None,
                coupon: None,
                created_at: r.now,
                expires_at: r.expires_at,
            })
        }
    }

    #[async_trait]
    impl BatchTarget for Counter {
        async fn try_hold(&self, request: &HoldRequest) -> Result<Hold> {
            tokio::time::sleep(self.delay).await;
            self.grant(request)
        }
        async fn try_hold_batch(&self, requests: &[HoldRequest]) -> Vec<Result<Hold>> {
            self.batches.fetch_add(1, Ordering::SeqCst);
            self.largest
                .fetch_max(requests.len() as u32, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            requests.iter().map(|r| self.grant(r)).collect()
        }
        async fn release_hold(&self, id: HoldId, _now: DateTime<Utc>) -> Result<Hold> {
            let mut t = self.taken.lock();
            let n = t.1.remove(&id).unwrap_or(0);
            t.0 -= n;
            Err(Error::not_found("hold", id))
        }
    }

    fn request(event: EventId, quantity: u32) -> HoldRequest {
        let now = Utc
            .with_ymd_and_hms(2030, 1, 1, 10, 0, 0)
            .single()
            .expect("instant");
        HoldRequest {
            id: HoldId::new(),
            event_id: event,
            customer: UserId::new(),
            items: vec![HoldItem {
                tier_id: TierId::new(),
                quantity,
            }],
            now,
            expires_at: now + chrono::Duration::minutes(10),
            coupon: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_holds_form_batches_and_never_oversell() {
        let counter = Counter::new(100, 5);
        let combiner = Arc::new(HoldCombiner::over(counter.clone(), 256));
        let event = EventId::new();
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let c = Arc::clone(&combiner);
                let q = 1 + i % 3;
                tokio::spawn(async move { (q, c.hold(request(event, q)).await) })
            })
            .collect();
        let mut granted = 0;
        for t in tasks {
            match t.await.expect("task") {
                (q, Ok(_)) => granted += q,
                (_, Err(Error::SoldOut { .. })) => {}
                (_, Err(e)) => panic!("unexpected {e}"),
            }
        }
        assert_eq!(granted, counter.taken(), "every grant is counted once");
        assert!(counter.taken() <= 100);
        let batches = counter.batches.load(Ordering::SeqCst);
        assert!(batches < 64, "requests were combined: {batches} batches");
        assert!(counter.largest.load(Ordering::SeqCst) > 1);
        assert!(combiner.is_idle(), "idle queues are dropped");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_grants_in_arrival_order_what_fits() {
        let counter = Counter::new(5, 0);
        let event = EventId::new();
        let results = counter
            .try_hold_batch(&[request(event, 3), request(event, 3), request(event, 2)])
            .await;
        assert!(results[0].is_ok());
        assert!(matches!(
            results[1],
            Err(Error::SoldOut { available: 2, .. })
        ));
        assert!(results[2].is_ok(), "a later request that fits is granted");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_quiet_event_sends_each_request_alone_without_waiting() {
        let counter = Counter::new(10, 0);
        let combiner = HoldCombiner::over(counter.clone(), 256);
        let event = EventId::new();
        for _ in 0..3 {
            combiner.hold(request(event, 1)).await.expect("granted");
        }
        assert_eq!(counter.batches.load(Ordering::SeqCst), 3);
        assert_eq!(counter.largest.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_that_give_up_leak_no_units() {
        let counter = Counter::new(100, 50);
        let combiner = Arc::new(HoldCombiner::over(counter.clone(), 256));
        let event = EventId::new();
        // The first request's batch is with the store for 50 ms.
        let first = {
            let c = Arc::clone(&combiner);
            tokio::spawn(async move { c.hold(request(event, 1)).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        // Queued behind it, then abandoned before its batch forms.
        let queued = {
            let c = Arc::clone(&combiner);
            tokio::spawn(async move { c.hold(request(event, 7)).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        queued.abort();
        first.await.expect("task").expect("granted");
        // Abandoned while its own batch is with the store.
        let in_flight = {
            let c = Arc::clone(&combiner);
            tokio::spawn(async move { c.hold(request(event, 5)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        in_flight.abort();
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(counter.taken(), 1, "only the first caller's unit is taken");
        assert_eq!(counter.batches.load(Ordering::SeqCst), 2);
    }
}
