//! The shared conformance suite on PostgreSQL: every scenario on its own fresh
//! database, through two separate pools (as two server processes would have);
//! its batched half once more with checkouts opened in the same statement as
//! their holds
//! ([`PostgresStore::opening_with_holds`](ems_storage_postgres::PostgresStore::opening_with_holds));
//! and the whole suite once more writing documents as `jsonb`, as on a
//! database upgraded from a version before migration `0005` (a new database
//! writes them as `json`).

use std::sync::Arc;

use ems_core::testkit::TestStores;
use ems_storage_postgres::testing::{fresh_database, migrate_writing_jsonb, pool_store};

/// Two pools on a fresh, migrated database, opening bookings with their
/// holds or not.
async fn two_pools(open_with_holds: bool) -> TestStores {
    let options = fresh_database("ems_test")
        .await
        .expect("the test PostgreSQL (DATABASE_URL) is reachable");
    let a = pool_store(options.clone(), 12)
        .await
        .expect("pool a connects")
        .opening_with_holds(open_with_holds);
    a.migrate().await.expect("migrations apply");
    let b = pool_store(options, 12)
        .await
        .expect("pool b connects")
        .opening_with_holds(open_with_holds);
    TestStores::new(Arc::new(a), Arc::new(b))
}

/// [`two_pools`] on a database that writes documents as `jsonb`, as one
/// upgraded from a version before migration `0005` and not yet switched.
async fn two_pools_writing_jsonb() -> TestStores {
    let options = fresh_database("ems_test")
        .await
        .expect("the test PostgreSQL (DATABASE_URL) is reachable");
    migrate_writing_jsonb(options.clone())
        .await
        .expect("migrations apply");
    let a = pool_store(options.clone(), 12)
        .await
        .expect("pool a connects");
    let b = pool_store(options, 12).await.expect("pool b connects");
    TestStores::new(Arc::new(a), Arc::new(b))
}

async fn stores() -> TestStores {
    two_pools(false).await
}

async fn stores_opening_with_holds() -> TestStores {
    two_pools(true).await
}

ems_core::conformance_tests!(stores);

// Only the batched half: with batching off nothing is opened with its hold.
mod opening_with_holds {
    use super::*;
    ems_core::__conformance_suite!(
        stores_opening_with_holds,
        ems_core::inventory::HoldBatching::On
    );
}

mod documents_as_jsonb {
    use super::*;
    ems_core::conformance_tests!(two_pools_writing_jsonb);
}
