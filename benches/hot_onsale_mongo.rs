//! Hot on-sale on MongoDB: concurrent buyers run full checkouts (hold → booking →
//! FakeGateway → confirm → tickets) of 1–4 units, on one event of 1,000,000 units
//! and spread over 1,000 events; in the same run, the raw floor on the same
//! server: the same number of clients each looping one conditional
//! `findOneAndUpdate` of a counter document plus one `insertOne`, straight on the
//! driver.
//!
//! `cargo bench --features mongo --bench hot_onsale_mongo` runs each part for
//! `EMS_BENCH_SECS` seconds (default 20) with `EMS_BENCH_BUYERS` buyers (default
//! 32); `EMS_BENCH_ONLY=hot` runs only the hot event. Under `cargo test` it runs a
//! 1-second smoke version. The server is `MONGODB_URL` (default the local one,
//! `EMS_MONGO_COMPAT=emulator` for the test emulator); every run uses and drops
//! its own databases.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ems::mongo::MongoStore;
use ems_storage_mongo::testing::fresh_store;
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};

mod common;

use common::onsale::{self, Run};

/// `buyers` tasks check out 1–4 units on random events of `events` for `secs`,
/// on a fresh database; checks the counts after.
async fn onsale(label: &str, events: usize, capacity: u32, buyers: usize, secs: u64) -> Run {
    let store = fresh_store("ems_bench")
        .await
        .expect("the MongoDB server (MONGODB_URL) is reachable");
    let (ems, events) = common::published(Arc::new(store.clone()), events, capacity).await;
    let run = onsale::run(label.to_owned(), ems, events, buyers, secs).await;
    oversell_check(&store, run.tickets).await;
    store.database().drop().await.expect("drop bench database");
    run
}

fn int(b: &Bson) -> i64 {
    match b {
        Bson::Int64(n) => *n,
        Bson::Int32(n) => i64::from(*n),
        other => panic!("a counter is an integer, found {other:?}"),
    }
}

/// Sold units, confirmed units and issued tickets agree exactly.
async fn oversell_check(store: &MongoStore, tickets: u64) {
    let db = store.database();
    let docs = |name: &'static str, filter: Document| async move {
        db.collection::<Document>(name)
            .find(filter)
            .await
            .expect("readable")
            .try_collect::<Vec<Document>>()
            .await
            .expect("readable")
    };
    // Tier counters: `taken.t<tier>` of every event document.
    let mut sold = 0;
    for e in docs("events", doc! {}).await {
        let taken = e.get_document("taken").expect("counters");
        for (k, v) in taken {
            if k.starts_with('t') {
                sold += int(v);
            }
        }
    }
    let mut confirmed = 0;
    for b in docs("bookings", doc! { "status": "confirmed" }).await {
        let lines = b
            .get_document("body")
            .and_then(|body| body.get_array("lines"))
            .expect("a booking has lines");
        for line in lines {
            let line = line.as_document().expect("a line is a document");
            confirmed += int(line.get("quantity").expect("a line has a quantity"));
        }
    }
    let issued = db
        .collection::<Document>("tickets")
        .count_documents(doc! {})
        .await
        .expect("countable") as i64;
    assert_eq!(sold, confirmed, "sold units = confirmed units");
    assert_eq!(confirmed, issued, "confirmed units = tickets issued");
    assert_eq!(issued as u64, tickets, "every returned ticket is stored");
    println!("  oversell check: sold={sold} confirmed={confirmed} tickets={issued}  exact");
}

/// The raw floor: `clients` tasks loop one conditional `findOneAndUpdate` of a
/// counter (`counters` documents, picked at random) plus one `insertOne`; returns
/// operations (update + insert) per second.
async fn floor(counters: usize, clients: usize, secs: u64) -> f64 {
    let store = fresh_store("ems_bench_floor")
        .await
        .expect("the MongoDB server (MONGODB_URL) is reachable");
    let db = store.database().clone();
    let seed: Vec<Document> = (0..counters)
        .map(|i| doc! { "_id": i as i64, "taken": 0_i64, "capacity": i64::MAX / 2 })
        .collect();
    db.collection::<Document>("quota")
        .insert_many(seed)
        .await
        .expect("seeded");
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (db, stop, done) = (db.clone(), Arc::clone(&stop), Arc::clone(&done));
        tasks.push(tokio::spawn(async move {
            let mut n = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let id = rand::random::<u64>() % counters as u64;
                let q = 1 + (n % 4);
                let hit = db
                    .collection::<Document>("quota")
                    .find_one_and_update(
                        doc! { "_id": id as i64, "taken": { "$lte": i64::MAX / 2 - q } },
                        doc! { "$inc": { "taken": q } },
                    )
                    .await
                    .expect("update runs");
                assert!(hit.is_some(), "the counter has room");
                db.collection::<Document>("rows")
                    .insert_one(doc! { "client": c as i64, "n": n, "quota": id as i64, "q": q })
                    .await
                    .expect("insert runs");
                n += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("floor client");
    }
    let rate = done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    println!(
        "{:<34} ops/s={rate:<10.0}",
        format!("raw floor, {counters} counter(s) ({clients} clients)")
    );
    db.drop().await.expect("drop floor database");
    rate
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
        if full && only == "hot" {
            onsale("hot event", 1, 1_000_000, buyers, secs)
                .await
                .print();
        } else if full {
            let floor_hot = floor(1, buyers, secs).await;
            let floor_spread = floor(1_000, buyers, secs).await;
            let hot = onsale("hot event", 1, 1_000_000, buyers, secs).await;
            hot.print();
            let spread = onsale("1,000 events", 1_000, 1_000_000, buyers, secs).await;
            spread.print();
            println!(
                "ratio hot: ems tickets/s / floor ops/s = {:.2}",
                hot.tickets_per_sec() / floor_hot
            );
            println!(
                "ratio spread: ems tickets/s / floor ops/s = {:.2}",
                spread.tickets_per_sec() / floor_spread
            );
        } else {
            floor(1, buyers, secs).await;
            onsale("hot event (smoke)", 1, 1_000_000, buyers, secs)
                .await
                .print();
        }
    });
}
