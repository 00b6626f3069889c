//! The batch statements (a checkout batch's openings and settlements, a hot
//! event's holds with their bookings) run as functions that `migrate`
//! creates: one round trip per batch. A database without them still works.

use std::sync::Arc;
use std::time::Duration;

use ems_core::booking::BookingStatus;
use ems_core::testkit::{Fixture, TestStores};
use ems_storage_postgres::testing::{fresh_database, pool_store};
use ems_storage_postgres::PostgresStore;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

/// A new database whose sessions count calls of PL/pgSQL functions.
async fn database() -> PgConnectOptions {
    let options = fresh_database("ems_test")
        .await
        .expect("the test PostgreSQL (DATABASE_URL) is reachable");
    let name = options.get_database().expect("a database name").to_owned();
    let mut admin = options.connect().await.expect("connects");
    sqlx::raw_sql(&format!(
        "ALTER DATABASE \"{name}\" SET track_functions = 'pl'"
    ))
    .execute(&mut admin)
    .await
    .expect("sets");
    admin.close().await.ok();
    options
}

/// The batch functions of the current database with their settings.
async fn functions(store: &PostgresStore) -> Vec<(String, Vec<String>)> {
    sqlx::query_as(
        "SELECT proname::text, coalesce(proconfig, '{}') FROM pg_proc \
         WHERE proname LIKE 'ems\\_batch\\_%' ORDER BY proname",
    )
    .fetch_all(store.pool())
    .await
    .expect("pg_proc readable")
}

/// Three checkouts on one event: the first on an unknown event (hold, then
/// a batch of openings, then of settlements), the next ones opened with
/// their holds.
async fn checkouts(store: &PostgresStore) {
    let stores = TestStores::new(Arc::new(store.clone()), Arc::new(store.clone()));
    let f = Fixture::new(stores).await;
    let (event, tiers) = f.published_event(100, &[("GA", "10", 100)]).await;
    let buyer = f.customer();
    for (n, key) in ["one", "two", "three"].iter().enumerate() {
        let c = f
            .ems
            .checkout(&buyer, f.order(event.id, tiers[0].id, 1 + n as u32, key))
            .await
            .expect("checked out");
        assert_eq!(c.booking.status, BookingStatus::Confirmed);
        assert_eq!(c.tickets.len(), 1 + n);
    }
    assert_eq!(f.event_taken(event.id).await, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_creates_the_batch_functions_and_checkouts_run_through_them() {
    let options = database().await;
    let a = pool_store(options.clone(), 4).await.expect("pool connects");
    let b = pool_store(options.clone(), 4).await.expect("pool connects");
    // Two processes migrating at once, then again: the same six functions
    // (three statements, each writing documents as `jsonb` or as `json`).
    let (ma, mb) = tokio::join!(a.migrate(), b.migrate());
    ma.expect("migrates");
    mb.expect("migrates");
    a.migrate().await.expect("migrates again");
    let made = functions(&a).await;
    assert_eq!(made.len(), 6, "{made:?}");
    for (name, config) in &made {
        assert_eq!(
            config,
            &vec!["enable_seqscan=off".to_owned()],
            "{name} plans with sequential scans discouraged"
        );
    }

    checkouts(&a).await;
    // Sessions report their function calls when they end.
    a.pool().close().await;
    b.pool().close().await;
    let reader = pool_store(options, 1).await.expect("pool connects");
    let mut calls = Vec::new();
    for _ in 0..100 {
        calls = sqlx::query_as::<_, (String, i64)>(
            "SELECT funcname::text, calls FROM pg_stat_user_functions \
             WHERE funcname LIKE 'ems\\_batch\\_%' ORDER BY funcname",
        )
        .fetch_all(reader.pool())
        .await
        .expect("function statistics readable");
        if calls.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A new database writes `json` documents: one function of each statement.
    let called: Vec<&str> = calls.iter().map(|(name, _)| name.as_str()).collect();
    let kinds: std::collections::BTreeSet<&str> = called
        .iter()
        .map(|name| name.rsplit_once('_').expect("a hash").0)
        .collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        ["ems_batch_hold_open", "ems_batch_open", "ems_batch_settle"],
        "every batch statement ran as its function: {called:?}"
    );
    assert!(called.iter().all(|c| made.iter().any(|(m, _)| m == c)));
    reader.pool().close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_functions_the_batches_run_their_statements() {
    let options = database().await;
    let store = pool_store(options.clone(), 4).await.expect("pool connects");
    store.migrate().await.expect("migrates");
    checkouts(&store).await;

    // Dropped under a store that has been using them, and for a new store.
    for (name, _) in functions(&store).await {
        sqlx::raw_sql(&format!("DROP FUNCTION {name}"))
            .execute(store.pool())
            .await
            .expect("drops");
    }
    checkouts(&store).await;
    let fresh = pool_store(options, 4).await.expect("pool connects");
    checkouts(&fresh).await;
    assert!(functions(&fresh).await.is_empty());
    store.pool().close().await;
    fresh.pool().close().await;
}
