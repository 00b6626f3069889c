//! One hot event on the in-memory backend: hold + release pairs by 1 task and
//! by 8 tasks, in alternating rounds of one process, so the machine's drift
//! between runs does not decide the ratio. Prints each round and the median
//! of the per-round ratios (8 tasks ÷ 1 task; the goal is at least 1).
//!
//! `cargo bench --bench hot_event` (`EMS_BENCH_ROUNDS`, default 9;
//! `EMS_BENCH_SECS` per measurement, default 1). Each task checks every
//! pair's hold and release succeed; `cargo test` runs one short round.

#![allow(missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ems::inventory::{HoldItem, HoldOptions};
use ems::prelude::*;

mod common;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Pairs per second of `tasks` tasks on `event` for `secs`.
fn pairs_per_sec(
    rt: &tokio::runtime::Runtime,
    w: &common::World,
    (event, tier): (EventId, TierId),
    tasks: usize,
    secs: Duration,
) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    rt.block_on(async {
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let (ems, store) = (w.ems.clone(), w.store.clone());
                let done = Arc::clone(&done);
                tokio::spawn(async move {
                    let buyer = Actor::Customer {
                        user: UserId::new(),
                    };
                    let items = [HoldItem {
                        tier_id: tier,
                        quantity: 1,
                    }];
                    let mut n = 0u64;
                    // Each task watches the clock itself: tasks that never
                    // wait leave no worker free to run a timer.
                    while start.elapsed() < secs {
                        for _ in 0..64 {
                            let hold = ems
                                .place_hold(&buyer, event, &items, HoldOptions::default())
                                .await
                                .expect("hold");
                            ems.release_hold(&buyer, hold.id).await.expect("release");
                            n += 1;
                            if n % 8192 == 0 {
                                common::prune(&store);
                            }
                        }
                    }
                    done.fetch_add(n, Ordering::Relaxed);
                })
            })
            .collect();
        for h in handles {
            h.await.expect("task finishes");
        }
    });
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    // `cargo test` runs benches without `--bench`: one short round then.
    let full = std::env::args().any(|a| a == "--bench");
    let rounds = if full {
        env_or("EMS_BENCH_ROUNDS", 9)
    } else {
        1
    };
    let secs = if full {
        Duration::from_secs(env_or("EMS_BENCH_SECS", 1))
    } else {
        Duration::from_millis(50)
    };
    let w = common::world(1, 100_000_000);
    let event = w.events[0];
    // The host's runtime: one worker per core, tasks spawned onto it.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .build()
        .expect("runtime starts");
    pairs_per_sec(&rt, &w, event, 8, secs / 2); // warm-up
    let (mut ratios, mut ones, mut eights) = (Vec::new(), Vec::new(), Vec::new());
    println!("round  1 task (pairs/s)  8 tasks (pairs/s)  ratio");
    for round in 1..=rounds {
        let one = pairs_per_sec(&rt, &w, event, 1, secs);
        let eight = pairs_per_sec(&rt, &w, event, 8, secs);
        ratios.push(eight / one);
        ones.push(one);
        eights.push(eight);
        println!(
            "{round:>5}  {one:>17.0}  {eight:>17.0}  {:>5.2}",
            eight / one
        );
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "medians: 1 task {:.0} pairs/s, 8 tasks {:.0} pairs/s, ratio {:.2}",
        median(ones),
        median(eights),
        median(ratios)
    );
}
