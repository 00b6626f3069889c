//! The hot on-sale driver shared by the backend benches: concurrent buyers run
//! full checkouts of 1–4 units for a fixed time and report throughput and latency.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ems::prelude::*;
use rand::Rng;

/// What one on-sale run measured.
pub(crate) struct Run {
    pub(crate) label: String,
    /// What was counted: checkouts or holds.
    pub(crate) mode: Mode,
    pub(crate) checkouts: u64,
    pub(crate) tickets: u64,
    pub(crate) elapsed: Duration,
    /// Checkout latencies, sorted.
    pub(crate) latencies: Vec<Duration>,
}

impl Run {
    /// One line: checkouts/s, tickets/s, p50 and p99 latency.
    pub(crate) fn print(&self) {
        let secs = self.elapsed.as_secs_f64();
        let pct = |p: f64| super::quantile(&self.latencies, p);
        let (ops, units) = match self.mode {
            Mode::Checkout => ("checkouts", "tickets"),
            Mode::Hold => ("holds", "units"),
        };
        println!(
            "{:<44} {ops}/s={:<8.0} {units}/s={:<8.0} p50={:>7.2?} p99={:>7.2?}",
            self.label,
            self.checkouts as f64 / secs,
            self.tickets as f64 / secs,
            pct(0.50),
            pct(0.99),
        );
    }

    /// Tickets issued (or units held) per second.
    #[allow(dead_code)]
    pub(crate) fn tickets_per_sec(&self) -> f64 {
        self.tickets as f64 / self.elapsed.as_secs_f64()
    }

    /// Checkouts (or holds) per second.
    #[allow(dead_code)]
    pub(crate) fn per_sec(&self) -> f64 {
        self.checkouts as f64 / self.elapsed.as_secs_f64()
    }

    /// The 99th-percentile latency.
    #[allow(dead_code)]
    pub(crate) fn p99(&self) -> Duration {
        super::quantile(&self.latencies, 0.99)
    }
}

/// What each buyer does in a loop.
#[allow(dead_code)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The full checkout; every one must confirm.
    Checkout,
    /// Only the hold (units stay held: the clock never moves).
    Hold,
}

/// `buyers` tasks check out 1–4 units on random events of `events` for `secs`;
/// every checkout must confirm.
pub(crate) async fn run(
    label: String,
    ems: Ems,
    events: Vec<(EventId, TierId)>,
    buyers: usize,
    secs: u64,
) -> Run {
    run_many(label, vec![ems], events, buyers, secs, Mode::Checkout).await
}

/// `buyers` tasks, spread round-robin over `services` (each its own pool and
/// hold combiner, as separate server processes would have), buy or hold 1–4
/// units on random events of `events` for `secs`. `tickets` counts units.
pub(crate) async fn run_many(
    label: String,
    services: Vec<Ems>,
    events: Vec<(EventId, TierId)>,
    buyers: usize,
    secs: u64,
    mode: Mode,
) -> Run {
    let events = Arc::new(events);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for b in 0..buyers {
        let ems = services[b % services.len()].clone();
        let (events, stop) = (Arc::clone(&events), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            let buyer = Actor::Customer {
                user: UserId::new(),
            };
            let (mut done, mut tickets, mut latencies) = (0u64, 0u64, Vec::new());
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (quantity, pick) = {
                    let mut rng = rand::thread_rng();
                    (rng.gen_range(1..=4u32), rng.gen_range(0..events.len()))
                };
                let (event, tier) = events[pick];
                n += 1;
                let items = vec![HoldItem {
                    tier_id: tier,
                    quantity,
                }];
                let t = Instant::now();
                match mode {
                    Mode::Checkout => {
                        let order = CheckoutRequest::new(event, items, format!("{b}-{n}"));
                        let c = ems
                            .checkout(&buyer, order)
                            .await
                            .expect("checkout succeeds");
                        latencies.push(t.elapsed());
                        assert_eq!(c.booking.status, BookingStatus::Confirmed);
                        tickets += c.tickets.len() as u64;
                    }
                    Mode::Hold => {
                        let h = ems
                            .place_hold(&buyer, event, &items, Default::default())
                            .await
                            .expect("hold succeeds");
                        latencies.push(t.elapsed());
                        tickets += u64::from(h.quantity());
                    }
                }
                done += 1;
            }
            (done, tickets, latencies)
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut checkouts, mut tickets, mut latencies) = (0, 0, Vec::new());
    for t in tasks {
        let (d, n, l) = t.await.expect("buyer task");
        checkouts += d;
        tickets += n;
        latencies.extend(l);
    }
    let elapsed = start.elapsed();
    latencies.sort();
    Run {
        mode,
        label: format!("ems {label} ({buyers} buyers)"),
        checkouts,
        tickets,
        elapsed,
        latencies,
    }
}

/// Bench settings: `(seconds, buyers)` from `EMS_BENCH_SECS` (default 20) and
/// `EMS_BENCH_BUYERS` (default 32) under `cargo bench`, a 1-second smoke run with
/// 4 buyers under `cargo test`; and whether this is the full run.
pub(crate) fn settings() -> (u64, usize, bool) {
    let full = std::env::args().any(|a| a == "--bench");
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    if full {
        (
            env("EMS_BENCH_SECS", 20),
            env("EMS_BENCH_BUYERS", 32) as usize,
            true,
        )
    } else {
        (1, 4, false)
    }
}
