//! One hot event on the in-memory backend: hold + release pairs by 1 task and
//! by 8 tasks, in alternating rounds of one process, so the machine's drift
//! between runs does not decide the ratio. Prints each round and the median
//! of the per-round ratios (8 tasks ÷ 1 task; the goal is at least 1).
//!
//! `cargo bench --bench hot_event` (`EMS_BENCH_ROUNDS`, default 9;
//! `EMS_BENCH_SECS` per measurement, default 1). Each task checks every
//! pair's hold and release succeed; `cargo test` runs one short round.
//!
//! Each round also prints the time of a hold + release pair at 8 tasks
//! (median and 99th percentile of every 64th pair: what a buyer waits, the
//! lock's waiting included), and how long a cache line takes to go from
//! one core to another and back, measured right after it: the 8-task figure is bound by
//! those trips (every line a critical section writes moves between the cores
//! that take the lock in turn), and on a virtual machine the same two vCPUs
//! can share a cache at one moment and sit on separate dies the next, which
//! changes the round trip several times over. A ratio means little without it.

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

/// Pairs per second of `tasks` tasks on `event` for `secs`, and the times
/// of a sample of the pairs (every 64th of each task), sorted.
fn pairs_per_sec(
    rt: &tokio::runtime::Runtime,
    w: &common::World,
    (event, tier): (EventId, TierId),
    tasks: usize,
    secs: Duration,
) -> (f64, Vec<Duration>) {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut sampled = rt.block_on(async {
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
                    let mut sampled = Vec::new();
                    // Each task watches the clock itself: tasks that never
                    // wait leave no worker free to run a timer.
                    while start.elapsed() < secs {
                        for i in 0..64 {
                            let began = (i == 0).then(Instant::now);
                            let hold = ems
                                .place_hold(&buyer, event, &items, HoldOptions::default())
                                .await
                                .expect("hold");
                            ems.release_hold(&buyer, hold.id).await.expect("release");
                            if let Some(began) = began {
                                sampled.push(began.elapsed());
                            }
                            n += 1;
                            if n % 8192 == 0 {
                                common::prune(&store);
                            }
                        }
                    }
                    done.fetch_add(n, Ordering::Relaxed);
                    sampled
                })
            })
            .collect();
        let mut sampled = Vec::new();
        for h in handles {
            sampled.extend(h.await.expect("task finishes"));
        }
        sampled
    });
    sampled.sort();
    let rate = done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    (rate, sampled)
}

/// The median time, over a few samples, for a cache line to go from one
/// thread to another and back: two threads take turns writing one counter.
fn line_round_trip(trips: u64) -> Duration {
    let sample = || {
        let turn = Arc::new(AtomicU64::new(0));
        let other = Arc::clone(&turn);
        let start = Instant::now();
        let peer = std::thread::spawn(move || {
            for i in 0..trips {
                while other.load(Ordering::Acquire) != 2 * i + 1 {
                    std::hint::spin_loop();
                }
                other.store(2 * i + 2, Ordering::Release);
            }
        });
        for i in 0..trips {
            while turn.load(Ordering::Acquire) != 2 * i {
                std::hint::spin_loop();
            }
            turn.store(2 * i + 1, Ordering::Release);
        }
        peer.join().expect("peer thread finishes");
        start.elapsed() / u32::try_from(trips).expect("trips fit u32")
    };
    let mut samples: Vec<Duration> = (0..5).map(|_| sample()).collect();
    samples.sort();
    samples[samples.len() / 2]
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
    let trips = if full { 20_000 } else { 1_000 };
    println!(
        "round  1 task (pairs/s)  8 tasks (pairs/s)  8 tasks' pair p50 / p99  line round trip  ratio"
    );
    for round in 1..=rounds {
        let (one, _) = pairs_per_sec(&rt, &w, event, 1, secs);
        let (eight, times) = pairs_per_sec(&rt, &w, event, 8, secs);
        // Right after the 8 tasks, while both cores are still awake (a
        // vCPU that sat idle takes a while to answer its first trips).
        let trip = line_round_trip(trips);
        ratios.push(eight / one);
        ones.push(one);
        eights.push(eight);
        println!(
            "{round:>5}  {one:>16.0}  {eight:>17.0}  {:>12.1} / {:>6.1} µs  {:>12.0} ns  {:>5.2}",
            common::quantile(&times, 0.5).as_secs_f64() * 1e6,
            common::quantile(&times, 0.99).as_secs_f64() * 1e6,
            trip.as_secs_f64() * 1e9,
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
