//! Shared set-up for the benches: published events with one large tier, and the
//! hot on-sale driver.

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use ems::clock::ManualClock;
use ems::memory::MemoryStore;
use ems::payment::FakeGateway;
use ems::prelude::*;

#[allow(dead_code)] // only the on-sale benches drive buyers
pub(crate) mod onsale;

/// A service over a fresh memory store with `events` published events of one tier each.
#[allow(dead_code)]
pub(crate) struct World {
    pub(crate) ems: Ems,
    pub(crate) store: MemoryStore,
    pub(crate) events: Vec<(EventId, TierId)>,
}

#[allow(dead_code)] // each bench compiles this module; not all of them use it
pub(crate) fn world(events: usize, capacity: u32) -> World {
    world_paid_by(events, capacity, Arc::new(FakeGateway::new("whsec_bench")))
}

/// [`world`] with `gateway` registered as "fake" instead of a `FakeGateway`.
#[allow(dead_code)]
pub(crate) fn world_paid_by(
    events: usize,
    capacity: u32,
    gateway: Arc<dyn ems::payment::PaymentGateway>,
) -> World {
    let store = MemoryStore::new();
    let ems = service_paid_by(Arc::new(store.clone()), env_batching(), gateway);
    let events = futures::executor::block_on(publish(&ems, events, capacity));
    World { ems, store, events }
}

/// A gateway that approves every payment at once and keeps nothing, as a
/// remote gateway costs this process nothing to remember: its reference is
/// derived from the payment's idempotency key.
#[allow(dead_code)]
pub(crate) struct ApproveAll;

#[async_trait::async_trait]
impl ems::payment::PaymentGateway for ApproveAll {
    fn capabilities(&self) -> ems::payment::Capabilities {
        ems::payment::Capabilities {
            partial_refunds: true,
            idempotency_keys: true,
            manual_capture: false,
            void: false,
            webhooks: false,
        }
    }

    async fn create_payment(
        &self,
        request: &ems::payment::PaymentRequest,
    ) -> Result<ems::payment::GatewayPayment, ems::payment::GatewayError> {
        Ok(ems::payment::GatewayPayment {
            reference: format!("ok_{}", request.idempotency_key),
            status: ems::payment::GatewayPaymentStatus::Succeeded,
        })
    }

    async fn payment_status(
        &self,
        reference: &str,
    ) -> Result<ems::payment::GatewayPayment, ems::payment::GatewayError> {
        Ok(ems::payment::GatewayPayment {
            reference: reference.to_owned(),
            status: ems::payment::GatewayPaymentStatus::Succeeded,
        })
    }

    async fn refund(
        &self,
        request: &ems::payment::RefundRequest,
    ) -> Result<ems::payment::GatewayRefund, ems::payment::GatewayError> {
        Ok(ems::payment::GatewayRefund {
            reference: format!("re_{}", request.idempotency_key),
            completed: true,
        })
    }
}

/// Hold batching as `EMS_BENCH_BATCHING=on|off` says (the store's preference otherwise).
pub(crate) fn env_batching() -> ems::inventory::HoldBatching {
    match std::env::var("EMS_BENCH_BATCHING").as_deref() {
        Ok("on") => ems::inventory::HoldBatching::On,
        Ok("off") => ems::inventory::HoldBatching::Off,
        _ => ems::inventory::HoldBatching::Auto,
    }
}

/// A service over `store`: a manual clock fixed at 2030-01-01 (holds never
/// lapse during a run), FakeGateway "fake", hold batching as given.
#[allow(dead_code)] // the on-sale benches build their services with it
pub(crate) fn service(store: Arc<dyn Store>, batching: ems::inventory::HoldBatching) -> Ems {
    service_paid_by(store, batching, Arc::new(FakeGateway::new("whsec_bench")))
}

/// [`service`] with `gateway` registered as "fake".
pub(crate) fn service_paid_by(
    store: Arc<dyn Store>,
    batching: ems::inventory::HoldBatching,
    gateway: Arc<dyn ems::payment::PaymentGateway>,
) -> Ems {
    let clock = ManualClock::new(
        Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0)
            .single()
            .expect("a valid instant"),
    );
    Ems::builder(store)
        .hold_batching(batching)
        .clock(Arc::new(clock))
        .gateway("fake", gateway)
        .ticket_key(&[1u8; 32])
        .build()
        .expect("bench set-up succeeds")
}

/// A service over `store` (see [`service`], batching from the environment) with
/// `events` published events of one tier ("GA", 1–10 per order) of `capacity`
/// units each.
#[allow(dead_code)] // the on-sale benches build their services with it
pub(crate) async fn published(
    store: Arc<dyn Store>,
    events: usize,
    capacity: u32,
) -> (Ems, Vec<(EventId, TierId)>) {
    published_with(store, events, capacity, env_batching()).await
}

/// [`published`] with hold batching as given.
#[allow(dead_code)] // the on-sale benches build their services with it
pub(crate) async fn published_with(
    store: Arc<dyn Store>,
    events: usize,
    capacity: u32,
    batching: ems::inventory::HoldBatching,
) -> (Ems, Vec<(EventId, TierId)>) {
    let ems = service(store, batching);
    let out = publish(&ems, events, capacity).await;
    (ems, out)
}

/// Publishes `events` events of one tier ("GA", 1–10 per order) of `capacity`
/// units each through `ems`.
pub(crate) async fn publish(ems: &Ems, events: usize, capacity: u32) -> Vec<(EventId, TierId)> {
    let org = ems
        .create_organization(&Actor::System, "Bench")
        .await
        .expect("bench set-up succeeds");
    let organizer = Actor::Organizer {
        user: UserId::new(),
        organization: org.id,
    };
    let starts = ems.now() + Duration::days(30);
    let mut out = Vec::with_capacity(events);
    for i in 0..events {
        let e = ems
            .create_event(
                &organizer,
                NewEvent::builder(
                    org.id,
                    format!("Event {i}"),
                    starts,
                    starts + Duration::hours(2),
                )
                .capacity(capacity)
                .build(),
            )
            .await
            .expect("bench set-up succeeds");
        let t = ems
            .add_tier(
                &organizer,
                e.id,
                NewTier::new(
                    "GA",
                    Money::parse("10.00", "EUR").expect("bench set-up succeeds"),
                    capacity,
                )
                .per_order(1, 10),
            )
            .await
            .expect("bench set-up succeeds");
        ems.publish_event(&organizer, e.id, e.version)
            .await
            .expect("bench set-up succeeds");
        out.push((e.id, t.id));
    }
    out
}

/// The periodic clean-up a deployment runs: drop delivered domain events and
/// forget ended holds, so long runs measure steady state, not unbounded growth.
#[allow(dead_code)]
pub(crate) fn prune(store: &MemoryStore) {
    use ems::inventory::InventoryStore;
    use ems::outbox::OutboxStore;
    futures::executor::block_on(async {
        store.prune_events(u64::MAX).await.expect("prune succeeds");
        store
            .purge_ended_holds(chrono::DateTime::<Utc>::MAX_UTC, u32::MAX)
            .await
            .expect("purge succeeds");
    });
}

/// The `q` quantile (0 to 1) of `sorted` times: the one that far through
/// them, zero if there are none.
#[allow(dead_code)] // each bench compiles this module; not all of them time calls
pub(crate) fn quantile(sorted: &[std::time::Duration], q: f64) -> std::time::Duration {
    sorted
        .get(((sorted.len().max(1) - 1) as f64 * q) as usize)
        .copied()
        .unwrap_or_default()
}

/// Checks out 2 tickets of event `i % events` under key `i`.
#[allow(dead_code)] // each bench compiles this module; not all of them check out
pub(crate) fn checkout_two(w: &World, buyer: &Actor, i: u64) -> ems::booking::Checkout {
    let (event, tier) = w.events[(i % w.events.len() as u64) as usize];
    let order = CheckoutRequest::new(
        event,
        vec![HoldItem {
            tier_id: tier,
            quantity: 2,
        }],
        i.to_string(),
    );
    futures::executor::block_on(w.ems.checkout(buyer, order)).expect("checkout succeeds")
}
