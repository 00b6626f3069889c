//! Hot on-sale on PostgreSQL: concurrent buyers run full checkouts (hold →
//! booking → FakeGateway → confirm → tickets) of 1–4 units, on one event of
//! 1,000,000 units and spread over 1,000 events; in the same run, the raw floor
//! (`benches/pg_floor/*.sql` under pgbench: one conditional counter UPDATE plus
//! one INSERT per transaction) on the same server.
//!
//! `cargo bench --features postgres --bench hot_onsale_postgres` runs each part
//! for `EMS_BENCH_SECS` seconds (default 20) with `EMS_BENCH_BUYERS` buyers
//! (default 32); `EMS_BENCH_ONLY=hot` runs only the hot event. Under `cargo test` it runs a 1-second smoke version without
//! pgbench. The server is `DATABASE_URL` (default the local one); every run
//! creates and drops its own databases.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ems::postgres::PostgresStore;
use ems::prelude::*;
use ems_storage_postgres::testing::{fresh_database, pool_store, server_url};
use rand::Rng;

mod common;

struct Run {
    label: String,
    checkouts: u64,
    tickets: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Run {
    fn print(&self) {
        let secs = self.elapsed.as_secs_f64();
        let pct = |p: f64| {
            self.latencies
                .get(((self.latencies.len().max(1) - 1) as f64 * p) as usize)
                .copied()
                .unwrap_or_default()
        };
        println!(
            "{:<34} checkouts/s={:<8.0} tickets/s={:<8.0} p50={:>7.2?} p99={:>7.2?}",
            self.label,
            self.checkouts as f64 / secs,
            self.tickets as f64 / secs,
            pct(0.50),
            pct(0.99),
        );
    }

    fn tickets_per_sec(&self) -> f64 {
        self.tickets as f64 / self.elapsed.as_secs_f64()
    }
}

/// `buyers` tasks check out 1–4 units on random events of `events` for `secs`.
async fn onsale(label: &str, events: usize, capacity: u32, buyers: usize, secs: u64) -> Run {
    let options = fresh_database("ems_bench")
        .await
        .expect("the PostgreSQL server (DATABASE_URL) is reachable");
    let store = pool_store(options, buyers as u32 + 2)
        .await
        .expect("pool connects");
    store.migrate().await.expect("migrations apply");
    let (ems, events) = common::published(Arc::new(store.clone()), events, capacity).await;
    let events = Arc::new(events);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for b in 0..buyers {
        let (ems, events, stop) = (ems.clone(), Arc::clone(&events), Arc::clone(&stop));
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
                let order = CheckoutRequest::new(
                    event,
                    vec![HoldItem {
                        tier_id: tier,
                        quantity,
                    }],
                    format!("{b}-{n}"),
                );
                n += 1;
                let t = Instant::now();
                let c = ems
                    .checkout(&buyer, order)
                    .await
                    .expect("checkout succeeds");
                latencies.push(t.elapsed());
                assert_eq!(c.booking.status, BookingStatus::Confirmed);
                done += 1;
                tickets += c.tickets.len() as u64;
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
    oversell_check(&store, tickets).await;
    let db: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(store.pool())
        .await
        .expect("name");
    store.pool().close().await;
    drop_database(&db).await;
    Run {
        label: format!("ems {label} ({buyers} buyers)"),
        checkouts,
        tickets,
        elapsed,
        latencies,
    }
}

/// Sold units, confirmed units and issued tickets agree exactly.
async fn oversell_check(store: &PostgresStore, tickets: u64) {
    let (sold, confirmed, issued, capacity_ok): (i64, i64, i64, bool) = sqlx::query_as(
        "SELECT (SELECT coalesce(sum(taken), 0)::int8 FROM ems_tiers), \
                (SELECT coalesce(sum(h.quantity), 0)::int8 FROM ems_bookings b \
                   JOIN ems_holds h ON h.id = b.hold_id WHERE b.status = 'confirmed'), \
                (SELECT count(*) FROM ems_tickets), \
                (SELECT bool_and(taken <= capacity) FROM ems_tiers)",
    )
    .fetch_one(store.pool())
    .await
    .expect("counts");
    assert_eq!(sold, confirmed, "sold units = confirmed units");
    assert_eq!(confirmed, issued, "confirmed units = tickets issued");
    assert_eq!(issued as u64, tickets, "every returned ticket is stored");
    assert!(capacity_ok, "no tier above capacity");
    println!("  oversell check: sold={sold} confirmed={confirmed} tickets={issued}  exact");
}

async fn drop_database(name: &str) {
    use sqlx::{ConnectOptions, Connection};
    let options: sqlx::postgres::PgConnectOptions = server_url().parse().expect("DATABASE_URL");
    let mut admin = options.connect().await.expect("server reachable");
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .expect("drop bench database");
    admin.close().await.ok();
}

/// The raw floor: `script` under pgbench with `clients` for `secs`; returns tx/s.
async fn pgbench(script: &str, clients: usize, secs: u64) -> f64 {
    let options = fresh_database("ems_bench_floor")
        .await
        .expect("server reachable");
    let db = options.get_database().expect("named").to_owned();
    let base = server_url();
    let url = format!("{}/{db}", base.rsplit_once('/').map_or(&*base, |(b, _)| b));
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/pg_floor");
    let schema = Command::new("psql")
        .args([&url, "-q", "-f", &format!("{dir}/schema.sql")])
        .output()
        .expect("psql runs");
    assert!(schema.status.success(), "floor schema loads");
    let out = Command::new("pgbench")
        .args(["-n", "-M", "prepared", "-f", &format!("{dir}/{script}")])
        .args([
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-T",
            &secs.to_string(),
            &url,
        ])
        .output()
        .expect("pgbench runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "pgbench succeeds: {text}");
    let tps = text
        .lines()
        .find(|l| l.starts_with("tps"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse::<f64>().ok())
        .expect("pgbench prints tps");
    let latency = text
        .lines()
        .find(|l| l.starts_with("latency average"))
        .unwrap_or("latency average = ?");
    println!(
        "{:<34} tx/s={tps:<10.0} rows/s={tps:<10.0} {latency}",
        format!("raw floor {script} ({clients} clients)")
    );
    drop_database(&db).await;
    tps
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (secs, buyers) = if full {
        (
            env("EMS_BENCH_SECS", 20),
            env("EMS_BENCH_BUYERS", 32) as usize,
        )
    } else {
        (1, 4)
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let only = std::env::var("EMS_BENCH_ONLY").unwrap_or_default();
        if full && only == "hot" {
            onsale("hot event", 1, 1_000_000, buyers, secs)
                .await
                .print();
        } else if full {
            let floor_hot = pgbench("hot.sql", buyers, secs).await;
            let floor_spread = pgbench("spread.sql", buyers, secs).await;
            let hot = onsale("hot event", 1, 1_000_000, buyers, secs).await;
            hot.print();
            let spread = onsale("1,000 events", 1_000, 1_000_000, buyers, secs).await;
            spread.print();
            println!(
                "ratio hot: ems tickets/s / floor rows/s = {:.2}",
                hot.tickets_per_sec() / floor_hot
            );
            println!(
                "ratio spread: ems tickets/s / floor rows/s = {:.2}",
                spread.tickets_per_sec() / floor_spread
            );
        } else {
            onsale("hot event (smoke)", 1, 1_000_000, buyers, secs)
                .await
                .print();
        }
    });
}
