//! Full checkout on the in-memory backend (hold → booking → FakeGateway → confirm →
//! 2 tickets), spread over 1,000 events, on one core: a fixed workload, so runs
//! compare (state grows with every booking, as it would in production).
//!
//! `cargo bench --bench checkout_memory` runs 300,000 checkouts after 20,000 of
//! warm-up; under `cargo test` it runs 2,000 to stay quick. To see how the
//! rate moves with the state's size, `EMS_BENCH_CHECKOUTS` sets how many are
//! measured and `EMS_BENCH_EVENTS` over how many events (default 1,000).

use std::time::Instant;

use ems::prelude::*;

mod common;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&v| v > 0)
            .unwrap_or(default)
    };
    let (warmup, n) = if full {
        (20_000u64, env("EMS_BENCH_CHECKOUTS", 300_000))
    } else {
        (200, 2_000)
    };
    let events = env("EMS_BENCH_EVENTS", 1_000);
    let w = common::world(events as usize, 50_000_000);
    let buyer = Actor::Customer {
        user: UserId::new(),
    };
    let mut latencies = Vec::with_capacity(n as usize);
    let checkout = |i: u64| {
        let c = common::checkout_two(&w, &buyer, i);
        assert_eq!(c.booking.status, BookingStatus::Confirmed);
        if i % 8192 == 0 {
            common::prune(&w.store);
        }
    };
    for i in 0..warmup {
        checkout(i);
    }
    let start = Instant::now();
    for i in warmup..warmup + n {
        let t = Instant::now();
        checkout(i);
        latencies.push(t.elapsed());
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let pct = |p: f64| common::quantile(&latencies, p);
    let rate = n as f64 / elapsed.as_secs_f64();
    println!(
        "checkouts: {n} (after {warmup} warm-up), 2 tickets each, {events} events, one thread"
    );
    println!("checkouts/s: {rate:.0}   tickets/s: {:.0}", rate * 2.0);
    println!(
        "latency p50: {:?}   p99: {:?}   max: {:?}",
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
}
