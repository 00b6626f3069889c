//! With `opening_with_holds`, a batching service's checkout opens its booking
//! in the same transaction as its hold once the store knows the event (its
//! previous hold batch left it known): one commit fewer per checkout, with
//! the same answers.

use std::sync::Arc;

use ems_core::booking::BookingStatus;
use ems_core::testkit::{Fixture, TestStores};
use ems_storage_postgres::testing::{fresh_database, pool_store};
use ems_storage_postgres::PostgresStore;

async fn world() -> (Fixture, PostgresStore) {
    let options = fresh_database("ems_test")
        .await
        .expect("the test PostgreSQL (DATABASE_URL) is reachable");
    let store = pool_store(options, 8)
        .await
        .expect("pool connects")
        .opening_with_holds(true);
    store.migrate().await.expect("migrations apply");
    let stores = TestStores::new(Arc::new(store.clone()), Arc::new(store.clone()));
    (Fixture::new(stores).await, store)
}

/// How many transactions wrote the domain events of booking `booking` and
/// of its hold `hold` (placed, booking created).
async fn transactions(store: &PostgresStore, hold: uuid::Uuid, booking: uuid::Uuid) -> i64 {
    sqlx::query_scalar(
        "SELECT count(DISTINCT txid) FROM ems_outbox \
         WHERE (doc->>'type' = 'hold_placed' AND doc->>'hold_id' = $1::text) \
            OR (doc->>'type' = 'booking_created' AND doc->>'booking_id' = $2::text)",
    )
    .bind(hold)
    .bind(booking)
    .fetch_one(store.pool())
    .await
    .expect("outbox readable")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_event_opens_each_booking_with_its_hold() {
    let (f, store) = world().await;
    assert!(f.ems.batches_holds(), "batching is on by default here");
    let (event, tiers) = f.published_event(100, &[("GA", "10", 100)]).await;
    let buyer = f.customer();

    // The first checkout finds the event unknown: hold, then opening.
    let first = f
        .ems
        .checkout(&buyer, f.order(event.id, tiers[0].id, 2, "first"))
        .await
        .expect("checked out");
    // The next ones find it as the last hold batch left it.
    let second = f
        .ems
        .checkout(&buyer, f.order(event.id, tiers[0].id, 3, "second"))
        .await
        .expect("checked out");
    for c in [&first, &second] {
        assert_eq!(c.booking.status, BookingStatus::Confirmed);
        assert_eq!(c.tickets.len() as u32, c.booking.quantity());
    }
    assert_eq!(
        transactions(&store, first.booking.hold_id.0, first.booking.id.0).await,
        2,
        "two steps on an unknown event"
    );
    assert_eq!(
        transactions(&store, second.booking.hold_id.0, second.booking.id.0).await,
        1,
        "hold and booking in one transaction"
    );

    // A retry of a key on the one-statement path answers with its booking;
    // the retry's own hold gives its units back.
    let again = f
        .ems
        .checkout(&buyer, f.order(event.id, tiers[0].id, 3, "second"))
        .await
        .expect("the same checkout");
    assert_eq!(again.booking.id, second.booking.id);
    assert_eq!(again.tickets.len(), 3);
    assert_eq!(
        f.event_taken(event.id).await,
        5,
        "only the two bookings' units"
    );
    let bookings: i64 = sqlx::query_scalar("SELECT count(*) FROM ems_bookings")
        .fetch_one(store.pool())
        .await
        .expect("bookings readable");
    assert_eq!(bookings, 2);
}
