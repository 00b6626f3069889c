//! Full checkout on the in-memory backend (hold → booking → FakeGateway → confirm →
//! tickets), spread over 1,000 events.
//!
//! `cargo bench --bench checkout_memory`

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ems::prelude::*;
use futures::executor::block_on;

mod common;

fn checkout(c: &mut Criterion) {
    let w = common::world(1_000, 50_000_000);
    let buyer = Actor::Customer {
        user: UserId::new(),
    };
    let mut g = c.benchmark_group("checkout_1000_events");
    g.throughput(Throughput::Elements(1));
    let mut n = 0u64;
    g.bench_function("2 tickets per checkout", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                n += 1;
                let (event, tier) = w.events[(n % 1_000) as usize];
                let req = CheckoutRequest {
                    event_id: event,
                    items: vec![HoldItem {
                        tier_id: tier,
                        quantity: 2,
                    }],
                    idempotency_key: n.to_string(),
                    gateway: None,
                    on_behalf_of: None,
                };
                let c = block_on(w.ems.checkout(&buyer, req)).expect("bench set-up succeeds");
                assert_eq!(c.booking.status, BookingStatus::Confirmed);
                if n % 8192 == 0 {
                    common::prune(&w.store);
                }
            }
            start.elapsed()
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = checkout
}
criterion_main!(benches);
