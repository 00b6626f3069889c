//! The documents of holds, bookings and payments as `json` (migration
//! `0005`): a new database writes them so from the start; a database that
//! earlier versions use keeps `jsonb` until told, and those versions' own
//! reads (prepared before the upgrade) keep working on every row written
//! meanwhile; once told, rows of both formats are read, and a record written
//! in one is rewritten in the other.

use std::sync::Arc;

use ems_core::booking::{Booking, BookingStatus};
use ems_core::inventory::Hold;
use ems_core::payment::{FakeBehavior, Payment, PaymentStatus};
use ems_core::testkit::{Fixture, TestStores};
use ems_storage_postgres::testing::{fresh_database, fresh_store, pool_store};
use ems_storage_postgres::PostgresStore;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Row};
use uuid::Uuid;

/// Where a checkout's hold, booking and payment keep their documents:
/// `"jsonb"` or `"json"`, per row, or a description of a row that has both
/// or neither.
async fn formats(store: &PostgresStore, booking: Uuid) -> Vec<String> {
    let rows = sqlx::query(
        "SELECT 'hold' AS t, doc IS NOT NULL AS d, body IS NOT NULL AS j FROM ems_holds \
             WHERE booking_id = $1 \
         UNION ALL SELECT 'booking', doc IS NOT NULL, body IS NOT NULL FROM ems_bookings \
             WHERE id = $1 \
         UNION ALL SELECT 'payment', doc IS NOT NULL, body IS NOT NULL FROM ems_payments \
             WHERE booking_id = $1",
    )
    .bind(booking)
    .fetch_all(store.pool())
    .await
    .expect("rows readable");
    assert_eq!(rows.len(), 3, "a hold, a booking and a payment");
    rows.iter()
        .map(|r| {
            let (t, d, j): (String, bool, bool) = (r.get(0), r.get(1), r.get(2));
            match (d, j) {
                (true, false) => "jsonb".to_owned(),
                (false, true) => "json".to_owned(),
                _ => format!("{t} with doc {d} and body {j}"),
            }
        })
        .collect()
}

fn all(format: &str) -> Vec<String> {
    vec![format.to_owned(); 3]
}

async fn world(store: &PostgresStore) -> (Fixture, ems_core::id::EventId, ems_core::id::TierId) {
    let stores = TestStores::new(Arc::new(store.clone()), Arc::new(store.clone()));
    let f = Fixture::new(stores).await;
    let (event, tiers) = f.published_event(100, &[("GA", "10", 100)]).await;
    (f, event.id, tiers[0].id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_database_writes_documents_as_json() {
    let store = fresh_store("ems_test", 4)
        .await
        .expect("the test PostgreSQL (DATABASE_URL) is reachable and migrates");
    let (f, event, tier) = world(&store).await;
    let c = f.buy(&f.customer(), event, tier, 2).await;
    assert_eq!(c.booking.status, BookingStatus::Confirmed);
    assert_eq!(formats(&store, c.booking.id.0).await, all("json"));
    let setting: String =
        sqlx::query_scalar("SELECT value FROM ems_settings WHERE name = 'documents'")
            .fetch_one(store.pool())
            .await
            .expect("the setting is there");
    assert_eq!(setting, "json");
}

/// The migrations a version before `0005` shipped.
#[derive(Debug)]
struct Earlier(Vec<sqlx::migrate::Migration>);

impl sqlx::migrate::MigrationSource<'static> for Earlier {
    fn resolve(
        self,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = Result<Vec<sqlx::migrate::Migration>, sqlx::error::BoxDynError>,
                > + Send,
        >,
    > {
        Box::pin(async move { Ok(self.0) })
    }
}

/// Migrates a new database as a version before `0005` would have.
async fn migrate_to_0004(options: &PgConnectOptions) {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"));
    let all = sqlx::migrate::Migrator::new(dir)
        .await
        .expect("migrations readable");
    let earlier = sqlx::migrate::Migrator::new(Earlier(
        all.iter().filter(|m| m.version < 5).cloned().collect(),
    ))
    .await
    .expect("a migrator");
    assert_eq!(earlier.iter().count(), 4);
    let mut conn = options.connect().await.expect("connects");
    earlier.run(&mut conn).await.expect("migrations 1-4 apply");
    conn.close().await.ok();
}

/// An earlier version's reads of a hold, a booking and a payment, as it
/// prepared them (documents in `doc` only).
const OLD_READS: [&str; 3] = [
    "SELECT id, doc, status, booking_id FROM ems_holds WHERE booking_id = $1",
    "SELECT id, doc, status, reason, updated_at, version FROM ems_bookings WHERE id = $1",
    "SELECT id, doc FROM ems_payments WHERE booking_id = $1 ORDER BY seq",
];

/// Runs [`OLD_READS`] for `booking` on `conn`, parsing each document as
/// that version would.
async fn old_reads(conn: &mut sqlx::PgConnection, booking: Uuid) -> (Hold, Booking, Payment) {
    let mut docs = Vec::new();
    for sql in OLD_READS {
        let row = sqlx::query(sql)
            .bind(booking)
            .fetch_one(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let doc: sqlx::types::Json<serde_json::Value> = row.get("doc");
        docs.push(doc.0);
    }
    let mut docs = docs.into_iter();
    let mut next = || docs.next().expect("three documents");
    (
        serde_json::from_value(next()).expect("a hold"),
        serde_json::from_value(next()).expect("a booking"),
        serde_json::from_value(next()).expect("a payment"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_database_keeps_jsonb_until_told_and_then_reads_both() {
    let options = fresh_database("ems_test")
        .await
        .expect("the test PostgreSQL (DATABASE_URL) is reachable");
    migrate_to_0004(&options).await;

    // A process of the earlier version, its reads prepared before the upgrade.
    let mut old = options.connect().await.expect("connects");
    for sql in OLD_READS {
        sqlx::query(sql)
            .bind(Uuid::nil())
            .fetch_all(&mut old)
            .await
            .expect("prepared");
    }

    let store = pool_store(options.clone(), 4).await.expect("pool connects");
    store.migrate().await.expect("migration 0005 applies");
    let (f, event, tier) = world(&store).await;
    f.gateway.push(FakeBehavior::Pending);
    let pending = f.buy(&f.customer(), event, tier, 1).await;
    assert_eq!(pending.booking.status, BookingStatus::Pending);
    let paid = f.buy(&f.customer(), event, tier, 2).await;
    assert_eq!(paid.booking.status, BookingStatus::Confirmed);
    for c in [&pending, &paid] {
        assert_eq!(formats(&store, c.booking.id.0).await, all("jsonb"));
    }
    // The earlier version reads them with the statements it prepared.
    let (hold, booking, payment) = old_reads(&mut old, paid.booking.id.0).await;
    assert_eq!(booking.id, paid.booking.id);
    assert_eq!(hold.id, booking.hold_id);
    assert_eq!(booking.total, paid.booking.total);
    assert_eq!(payment.id, paid.payment.as_ref().expect("a payment").id);
    old.close().await.ok();

    // Every process now runs this version: documents go to `json`.
    store
        .write_documents_as_json()
        .await
        .expect("the setting is written");
    let later = f.buy(&f.customer(), event, tier, 3).await;
    assert_eq!(later.booking.status, BookingStatus::Confirmed);
    assert_eq!(formats(&store, later.booking.id.0).await, all("json"));
    // The pending payment, written as `jsonb`, settles now: its record is
    // rewritten as `json` (the row never has both).
    let reference = pending
        .payment
        .as_ref()
        .and_then(|p| p.reference.clone())
        .expect("a pending payment with its reference");
    let settled = f
        .ems
        .handle_webhook("fake", &f.gateway.settle(&reference, true))
        .await
        .expect("webhook handled")
        .expect("a checkout");
    assert_eq!(settled.booking.status, BookingStatus::Confirmed);
    assert_eq!(
        formats(&store, pending.booking.id.0).await,
        vec!["jsonb", "jsonb", "json"],
        "hold and booking as written; the payment rewritten"
    );

    // Another process opened afterwards reads every row and writes `json`.
    let other = pool_store(options, 2).await.expect("pool connects");
    let (g, event_b, tier_b) = world(&other).await;
    for c in [&pending, &paid, &later] {
        let read = g
            .ems
            .checkout_status(&f.organizer, c.booking.id)
            .await
            .expect("read through the other process");
        assert_eq!(read.booking.status, BookingStatus::Confirmed);
        assert_eq!(read.booking.total, c.booking.total);
        assert_eq!(read.tickets.len(), c.booking.quantity() as usize);
        let p = read.payment.expect("its payment");
        assert_eq!(p.status, PaymentStatus::Succeeded);
    }
    let newest = g.buy(&g.customer(), event_b, tier_b, 1).await;
    assert_eq!(formats(&other, newest.booking.id.0).await, all("json"));
}
