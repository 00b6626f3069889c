//! Hold + release on the in-memory backend: spread over 1,000 events, and one hot
//! event hit by 1 and by 8 threads.
//!
//! `cargo bench --bench inventory`

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ems::inventory::{HoldItem, HoldOptions, InventoryStore};
use ems::prelude::*;
use futures::executor::block_on;

mod common;

fn hold_release_spread(c: &mut Criterion) {
    let w = common::world(1_000, 1_000_000);
    let buyer = Actor::Customer {
        user: UserId::new(),
    };
    let mut g = c.benchmark_group("hold_release_1000_events");
    g.throughput(Throughput::Elements(1));
    g.bench_function("service (auth + validation + store)", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for i in 0..iters {
                let (event, tier) = w.events[(i % 1_000) as usize];
                let hold = block_on(w.ems.place_hold(
                    &buyer,
                    event,
                    &[HoldItem {
                        tier_id: tier,
                        quantity: 2,
                    }],
                    HoldOptions::default(),
                ))
                .expect("bench set-up succeeds");
                block_on(w.ems.release_hold(&buyer, hold.id)).expect("bench set-up succeeds");
                if i % 8192 == 0 {
                    common::prune(&w.store);
                }
            }
            start.elapsed()
        })
    });
    g.bench_function("store port (try_hold + release_hold)", |b| {
        let now = w.ems.now();
        let customer = UserId::new();
        b.iter_custom(|iters| {
            let start = Instant::now();
            for i in 0..iters {
                let (event, tier) = w.events[(i % 1_000) as usize];
                let request = ems::inventory::HoldRequest {
                    id: HoldId::new(),
                    event_id: event,
                    customer,
                    items: vec![HoldItem {
                        tier_id: tier,
                        quantity: 2,
                    }],
                    now,
                    expires_at: now + chrono::Duration::minutes(10),
                    coupon: None,
                };
                let hold = block_on(w.store.try_hold(&request)).expect("bench set-up succeeds");
                block_on(w.store.release_hold(hold.id, now)).expect("bench set-up succeeds");
                if i % 8192 == 0 {
                    common::prune(&w.store);
                }
            }
            start.elapsed()
        })
    });
    g.finish();
}

fn hot_event(c: &mut Criterion) {
    let w = common::world(1, 100_000_000);
    let (event, tier) = w.events[0];
    // The host's runtime: one worker per core, tasks spawned onto it.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .build()
        .expect("runtime starts");
    let mut g = c.benchmark_group("hold_release_one_hot_event");
    g.throughput(Throughput::Elements(1));
    for tasks in [1u64, 8] {
        g.bench_with_input(BenchmarkId::new("tasks", tasks), &tasks, |b, &tasks| {
            b.iter_custom(|iters| {
                let per = iters.div_ceil(tasks);
                let start = Instant::now();
                rt.block_on(async {
                    let handles: Vec<_> = (0..tasks)
                        .map(|_| {
                            let (ems, store) = (w.ems.clone(), w.store.clone());
                            tokio::spawn(async move {
                                let buyer = Actor::Customer {
                                    user: UserId::new(),
                                };
                                for i in 0..per {
                                    let items = [HoldItem {
                                        tier_id: tier,
                                        quantity: 1,
                                    }];
                                    let hold = ems
                                        .place_hold(&buyer, event, &items, HoldOptions::default())
                                        .await
                                        .expect("hold");
                                    ems.release_hold(&buyer, hold.id).await.expect("release");
                                    if i % 8192 == 0 {
                                        common::prune(&store);
                                    }
                                }
                            })
                        })
                        .collect();
                    for h in handles {
                        h.await.expect("task finishes");
                    }
                });
                // Time per operation as if exactly `iters` ran (per × tasks ≥ iters).
                start.elapsed().mul_f64(iters as f64 / (per * tasks) as f64)
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = hold_release_spread, hot_event
}
criterion_main!(benches);
