//! Faults in the database: a connection killed mid-checkout and a statement
//! timeout leave no partial state and surface as retryable errors; the schema
//! refuses an oversell even when the application is bypassed.

use std::sync::Arc;
use std::time::Duration;

use ems_core::booking::BookingStatus;
use ems_core::testkit::{Fixture, TestStores};
use ems_core::{Actor, Error};
use ems_storage_postgres::testing::{fresh_database, pool_store};
use ems_storage_postgres::PostgresStore;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

struct World {
    f: Fixture,
    store: PostgresStore,
    options: PgConnectOptions,
}

async fn world(statement_timeout: Option<&str>) -> World {
    let options = fresh_database("ems_test")
        .await
        .expect("the test PostgreSQL (DATABASE_URL) is reachable");
    let mut pool_options = options.clone();
    if let Some(t) = statement_timeout {
        pool_options = pool_options.options([("statement_timeout", t)]);
    }
    let store = pool_store(pool_options, 8).await.expect("pool connects");
    store.migrate().await.expect("migrations apply");
    let stores = TestStores::new(Arc::new(store.clone()), Arc::new(store.clone()));
    World {
        f: Fixture::new(stores).await,
        store,
        options,
    }
}

/// A separate session, as another process would have.
async fn session(w: &World) -> PgConnection {
    w.options
        .connect()
        .await
        .expect("a second session connects")
}

/// Waits until some session of this database waits on a lock; returns its pid.
async fn blocked_backend(admin: &mut PgConnection) -> i32 {
    for _ in 0..200 {
        let pid: Option<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND pid <> pg_backend_pid() LIMIT 1",
        )
        .fetch_optional(&mut *admin)
        .await
        .expect("pg_stat_activity is readable");
        if let Some(pid) = pid {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no session ever waited on the lock");
}

async fn count(store: &PostgresStore, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(store.pool())
        .await
        .expect("count query runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_killed_while_holding_changes_nothing_and_is_retryable() {
    let w = world(None).await;
    let (e, tiers) = w.f.published_event(10, &[("GA", "10", 10)]).await;
    let buyer = w.f.customer();

    // Another session holds the event's row, so the hold waits inside its transaction.
    let mut blocker = session(&w).await;
    let mut tx = blocker.begin().await.expect("begin");
    sqlx::query("SELECT 1 FROM ems_events WHERE id = $1 FOR UPDATE")
        .bind(e.id.0)
        .execute(&mut *tx)
        .await
        .expect("lock the event row");

    let ems = w.f.ems.clone();
    let order = w.f.order(e.id, tiers[0].id, 3, "killed");
    let buyer2 = buyer;
    let checkout = tokio::spawn(async move { ems.checkout(&buyer2, order).await });
    let mut admin = session(&w).await;
    let pid = blocked_backend(&mut admin).await;
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&mut admin)
        .await
        .expect("terminate");
    assert!(killed);
    tx.rollback().await.expect("blocker lets go");

    let err = checkout
        .await
        .expect("task")
        .expect_err("the killed checkout fails");
    assert!(
        err.is_retryable(),
        "a lost connection is retryable: {err:?}"
    );
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert_eq!(count(&w.store, "SELECT count(*) FROM ems_holds").await, 0);
    assert_eq!(
        count(&w.store, "SELECT count(*) FROM ems_bookings").await,
        0
    );
    assert_eq!(w.f.event_taken(e.id).await, 0, "no units taken");
    assert_eq!(w.f.gateway.calls().0, 0, "nothing charged");

    let again =
        w.f.ems
            .checkout(&buyer, w.f.order(e.id, tiers[0].id, 3, "killed"))
            .await
            .expect("the retry goes through");
    assert_eq!(again.booking.status, BookingStatus::Confirmed);
    assert_eq!(again.tickets.len(), 3);
    assert_eq!(w.f.event_taken(e.id).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_killed_while_confirming_rolls_back_and_reconcile_completes() {
    let w = world(None).await;
    let (e, tiers) = w.f.published_event(10, &[("GA", "10", 10)]).await;
    let buyer = w.f.customer();

    // Ticket inserts wait behind another session's lock: the confirmation has
    // already marked its hold and is inside its transaction when it is killed.
    let mut blocker = session(&w).await;
    let mut tx = blocker.begin().await.expect("begin");
    sqlx::query("LOCK TABLE ems_tickets IN SHARE MODE")
        .execute(&mut *tx)
        .await
        .expect("lock tickets");

    let ems = w.f.ems.clone();
    let order = w.f.order(e.id, tiers[0].id, 2, "confirm-killed");
    let buyer2 = buyer;
    let checkout = tokio::spawn(async move { ems.checkout(&buyer2, order).await });
    let mut admin = session(&w).await;
    let pid = blocked_backend(&mut admin).await;
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .execute(&mut admin)
        .await
        .expect("terminate");
    tx.rollback().await.expect("blocker lets go");

    let err = checkout
        .await
        .expect("task")
        .expect_err("the killed confirmation fails");
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(count(&w.store, "SELECT count(*) FROM ems_tickets").await, 0);
    assert_eq!(
        count(
            &w.store,
            "SELECT count(*) FROM ems_holds WHERE status = 'active'"
        )
        .await,
        1,
        "the hold is active again, not half-confirmed"
    );
    let booking = count(
        &w.store,
        "SELECT count(*) FROM ems_bookings WHERE status = 'pending'",
    )
    .await;
    assert_eq!(booking, 1, "the booking is still pending");
    assert_eq!(w.f.event_taken(e.id).await, 2, "units stay held");
    // What the gateway said is kept even though the confirmation failed.
    assert_eq!(
        count(
            &w.store,
            "SELECT count(*) FROM ems_payments WHERE status = 'succeeded' AND reference IS NOT NULL"
        )
        .await,
        1,
        "the payment's success and reference are recorded"
    );

    // The payment went through; reconciling finishes the booking exactly once.
    let payment: uuid::Uuid = sqlx::query_scalar("SELECT id FROM ems_payments")
        .fetch_one(w.store.pool())
        .await
        .expect("one payment");
    let done =
        w.f.ems
            .reconcile_payment(&Actor::System, payment.into())
            .await
            .expect("reconcile");
    assert_eq!(done.booking.status, BookingStatus::Confirmed);
    assert_eq!(done.tickets.len(), 2);
    assert_eq!(w.f.gateway.calls().0, 1, "charged once");
    assert_eq!(w.f.event_taken(e.id).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_changes_nothing_and_is_retryable() {
    let w = world(Some("1000")).await;
    let (e, tiers) = w.f.published_event(10, &[("GA", "10", 10)]).await;
    let buyer = w.f.customer();

    let mut blocker = session(&w).await;
    let mut tx = blocker.begin().await.expect("begin");
    sqlx::query("SELECT 1 FROM ems_events WHERE id = $1 FOR UPDATE")
        .bind(e.id.0)
        .execute(&mut *tx)
        .await
        .expect("lock the event row");
    let err =
        w.f.ems
            .checkout(&buyer, w.f.order(e.id, tiers[0].id, 2, "slow"))
            .await
            .expect_err("times out");
    assert!(
        err.is_retryable(),
        "a statement timeout is retryable: {err:?}"
    );
    tx.rollback().await.expect("blocker lets go");

    assert_eq!(count(&w.store, "SELECT count(*) FROM ems_holds").await, 0);
    assert_eq!(w.f.event_taken(e.id).await, 0);
    let again =
        w.f.ems
            .checkout(&buyer, w.f.order(e.id, tiers[0].id, 2, "slow"))
            .await
            .expect("the retry goes through");
    assert_eq!(again.booking.status, BookingStatus::Confirmed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_refuses_an_oversell_even_when_the_application_is_bypassed() {
    let w = world(None).await;
    let (e, tiers) = w.f.published_event(5, &[("GA", "10", 5)]).await;
    let err = sqlx::query("UPDATE ems_tiers SET taken = capacity + 1 WHERE id = $1")
        .bind(tiers[0].id.0)
        .execute(w.store.pool())
        .await
        .expect_err("CHECK (taken <= capacity) refuses");
    assert_eq!(
        err.as_database_error().and_then(|d| d.code()).as_deref(),
        Some("23514")
    );
    let err = sqlx::query("UPDATE ems_events SET taken = -1 WHERE id = $1")
        .bind(e.id.0)
        .execute(w.store.pool())
        .await
        .expect_err("negative counters are refused");
    assert_eq!(
        err.as_database_error().and_then(|d| d.code()).as_deref(),
        Some("23514")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constraint_violations_map_to_domain_errors_without_leaking_names() {
    let w = world(None).await;
    let user = ems_core::directory::NewUser {
        email: "Dup@Example.com".into(),
        display_name: "Dup".into(),
        role: ems_core::directory::Role::Customer,
        organization: None,
    };
    w.f.ems
        .register_user(&Actor::System, user.clone())
        .await
        .expect("first");
    // A second handle (its own pool) races nothing here: the unique index decides.
    let err =
        w.f.ems_b
            .register_user(&Actor::System, user)
            .await
            .expect_err("duplicate email");
    assert!(
        matches!(
            err,
            Error::AlreadyExists {
                entity: "user",
                field: "email",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        !err.to_string().contains("ems_"),
        "no constraint name: {err}"
    );
}
