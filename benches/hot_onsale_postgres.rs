//! Hot on-sale on PostgreSQL: concurrent buyers run full checkouts (hold →
//! booking → FakeGateway → confirm → tickets) of 1–4 units, on one event of
//! 1,000,000 units and spread over 1,000 events; in the same run, the raw floor
//! (`benches/pg_floor/*.sql` under pgbench: one conditional counter UPDATE plus
//! one INSERT per transaction) on the same server.
//!
//! `cargo bench --features postgres --bench hot_onsale_postgres` runs each part
//! for `EMS_BENCH_SECS` seconds (default 20) with `EMS_BENCH_BUYERS` buyers
//! (default 32); `EMS_BENCH_ONLY=hot` runs only the hot event;
//! `EMS_BENCH_ONLY=combiner` runs the floor, then holds only and full checkouts
//! on the hot event with 32 and 256 buyers, hold batching off and on, then two
//! services (own pool, own combiner) at once (`EMS_BENCH_PARTS` picks some of
//! those parts, see [`wanted`]). Under `cargo test` it runs a 1-second smoke version without
//! pgbench. The server is `DATABASE_URL` (default the local one); every run
//! creates and drops its own databases.

use std::process::Command;
use std::sync::Arc;

use ems::postgres::PostgresStore;
use ems_storage_postgres::testing::{
    fresh_database, migrate_writing_jsonb, pool_store, server_url,
};

mod common;

use common::onsale::{self, Run};

/// `buyers` tasks check out 1–4 units on random events of `events` for `secs`,
/// on a fresh database; checks the counts after.
async fn onsale(label: &str, events: usize, capacity: u32, buyers: usize, secs: u64) -> Run {
    let options = fresh_database("ems_bench")
        .await
        .expect("the PostgreSQL server (DATABASE_URL) is reachable");
    let store = pool_store(options, buyers as u32 + 2)
        .await
        .expect("pool connects");
    store.migrate().await.expect("migrations apply");
    let (ems, events) = common::published(Arc::new(store.clone()), events, capacity).await;
    let run = onsale::run(label.to_owned(), ems, events, buyers, secs).await;
    oversell_check(&store, run.tickets).await;
    let db: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(store.pool())
        .await
        .expect("name");
    store.pool().close().await;
    drop_database(&db).await;
    run
}

/// The combiner comparison of the hot on-sale: one event, holds only and full
/// checkouts, `buyers` buyers, hold batching off and on, then two services (each
/// its own pool and combiner) at once.
async fn combiner(buyers: &[usize], secs: u64) {
    use ems::inventory::HoldBatching;
    for &n in buyers {
        for (mode, what) in [
            (onsale::Mode::Hold, "holds"),
            (onsale::Mode::Checkout, "checkouts"),
        ] {
            // The last: as the default, on a database upgraded from a
            // version that wrote documents as `jsonb` and not yet told to
            // write `json` (`PostgresStore::write_documents_as_json`).
            for (batching, with_holds, jsonb) in [
                (HoldBatching::Off, false, false),
                (HoldBatching::On, false, false),
                (HoldBatching::On, true, false),
                (HoldBatching::On, true, true),
            ] {
                let on = match (batching, with_holds, jsonb) {
                    (_, _, true) => "jsonb",
                    (_, true, _) => "merged",
                    (HoldBatching::On, ..) => "on",
                    _ => "off",
                };
                // Only checkouts open bookings.
                if (with_holds && mode == onsale::Mode::Hold)
                    || !wanted(&format!("{what}-{on}-{n}"))
                {
                    continue;
                }
                let options = fresh_database("ems_bench")
                    .await
                    .expect("the PostgreSQL server (DATABASE_URL) is reachable");
                let connections = (n as u32 + 2).min(80);
                if jsonb {
                    migrate_writing_jsonb(options.clone())
                        .await
                        .expect("migrations apply");
                }
                let store = pool_store(options.clone(), connections)
                    .await
                    .expect("pool connects")
                    .opening_with_holds(with_holds);
                if !jsonb {
                    store.migrate().await.expect("migrations apply");
                }
                let (ems, events) =
                    common::published_with(Arc::new(store.clone()), 1, 50_000_000, batching).await;
                let label = match (with_holds, jsonb) {
                    (_, true) => "on, opened with holds, documents as jsonb",
                    (true, _) => "on, opened with holds",
                    _ => on,
                };
                let run = onsale::run_many(
                    format!("hot {what}, batching {label}"),
                    vec![ems],
                    events,
                    n,
                    secs,
                    mode,
                )
                .await;
                run.print();
                oversell_check_any(&store, mode, run.tickets).await;
                close(store).await;
            }
        }
    }
    // Two services at once, each with its own pool and combiner.
    for (mode, what) in [
        (onsale::Mode::Hold, "holds"),
        (onsale::Mode::Checkout, "checkouts"),
    ] {
        if !wanted(&format!("{what}-2services")) {
            continue;
        }
        let options = fresh_database("ems_bench")
            .await
            .expect("the PostgreSQL server (DATABASE_URL) is reachable");
        let a = pool_store(options.clone(), 34)
            .await
            .expect("pool connects");
        a.migrate().await.expect("migrations apply");
        let b = pool_store(options, 34).await.expect("pool connects");
        let (ems_a, events) =
            common::published_with(Arc::new(a.clone()), 1, 50_000_000, HoldBatching::On).await;
        let ems_b = common::service(Arc::new(b.clone()), HoldBatching::On);
        let run = onsale::run_many(
            format!("hot {what}, batching on, 2 services"),
            vec![ems_a, ems_b],
            events,
            buyers[0],
            secs,
            mode,
        )
        .await;
        run.print();
        oversell_check_any(&a, mode, run.tickets).await;
        b.pool().close().await;
        close(a).await;
    }
}

/// Whether a part of the combiner comparison runs: `EMS_BENCH_PARTS` (comma
/// separated prefixes such as `floor`, `checkouts-on`, `holds-off-256`,
/// `checkouts-merged-32` (bookings opened with their holds),
/// `checkouts-jsonb-32` (the same on a database that writes documents as
/// `jsonb`, as one upgraded from a version before migration `0005`),
/// `holds-2services`) picks parts; unset runs them all.
fn wanted(part: &str) -> bool {
    std::env::var("EMS_BENCH_PARTS").map_or(true, |parts| {
        parts.split(',').any(|p| part.starts_with(p.trim()))
    })
}

/// Units taken on the tiers equal the units of active holds (holds only) or
/// the confirmed units and tickets (checkouts).
async fn oversell_check_any(store: &PostgresStore, mode: onsale::Mode, units: u64) {
    if mode == onsale::Mode::Checkout {
        return oversell_check(store, units).await;
    }
    let (taken, held, ok): (i64, i64, bool) = sqlx::query_as(
        "SELECT (SELECT coalesce(sum(taken), 0)::int8 FROM ems_tiers), \
                (SELECT coalesce(sum(quantity), 0)::int8 FROM ems_holds WHERE status = 'active'), \
                (SELECT bool_and(taken <= capacity) FROM ems_tiers)",
    )
    .fetch_one(store.pool())
    .await
    .expect("counts");
    assert_eq!(taken, held, "units taken = units of active holds");
    assert_eq!(held as u64, units, "every returned hold is stored");
    assert!(ok, "no tier above capacity");
    println!("  oversell check: taken={taken} held={held}  exact");
}

/// Holds only, batched, for the smoke run under `cargo test`.
async fn smoke_holds(buyers: usize, secs: u64) {
    let options = fresh_database("ems_bench")
        .await
        .expect("the PostgreSQL server (DATABASE_URL) is reachable");
    let store = pool_store(options, buyers as u32 + 2)
        .await
        .expect("pool connects");
    store.migrate().await.expect("migrations apply");
    let (ems, events) = common::published_with(
        Arc::new(store.clone()),
        1,
        1_000_000,
        ems::inventory::HoldBatching::On,
    )
    .await;
    let run = onsale::run_many(
        "hot holds, batching on (smoke)".into(),
        vec![ems],
        events,
        buyers,
        secs,
        onsale::Mode::Hold,
    )
    .await;
    run.print();
    oversell_check_any(&store, onsale::Mode::Hold, run.tickets).await;
    close(store).await;
}

async fn close(store: PostgresStore) {
    let db: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(store.pool())
        .await
        .expect("name");
    store.pool().close().await;
    drop_database(&db).await;
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
    // Every transaction's latency goes to a log (written by pgbench, not the
    // server), for the floor's percentiles.
    let logs = std::env::temp_dir().join(format!("ems-floor-{}", std::process::id()));
    std::fs::create_dir_all(&logs).expect("log directory");
    let prefix = logs.join("tx");
    let out = Command::new("pgbench")
        .args(["-n", "-M", "prepared", "-f", &format!("{dir}/{script}")])
        .args([
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-T",
            &secs.to_string(),
            "-l",
            "--log-prefix",
            &prefix.to_string_lossy(),
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
    // Log lines: client, transaction, latency (µs), script, epoch s, µs.
    let mut micros: Vec<u64> = std::fs::read_dir(&logs)
        .expect("pgbench logs")
        .flatten()
        .flat_map(|f| {
            std::fs::read_to_string(f.path())
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
                .collect::<Vec<u64>>()
        })
        .collect();
    std::fs::remove_dir_all(&logs).ok();
    micros.sort_unstable();
    let pct = |p: f64| {
        micros
            .get(((micros.len() as f64 * p) as usize).min(micros.len().saturating_sub(1)))
            .map_or(f64::NAN, |&us| us as f64 / 1000.0)
    };
    println!(
        "{:<34} tx/s={tps:<10.0} rows/s={tps:<10.0} {latency} p50={:.1}ms p99={:.1}ms",
        format!("raw floor {script} ({clients} clients)"),
        pct(0.50),
        pct(0.99)
    );
    drop_database(&db).await;
    tps
}

fn main() {
    let (secs, buyers, full) = onsale::settings();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let only = std::env::var("EMS_BENCH_ONLY").unwrap_or_default();
        if full && only == "combiner" {
            if wanted("floor") {
                pgbench("hot.sql", buyers, secs).await;
            }
            combiner(&[buyers, 256], secs).await;
        } else if full && only == "hot" {
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
            smoke_holds(buyers, secs).await;
        }
    });
}
