//! The shared conformance suite's batched half on PostgreSQL with checkouts
//! opened in the same statement as their holds
//! ([`PostgresStore::opening_with_holds`]), through two separate pools.

use std::sync::Arc;

use ems_core::testkit::TestStores;
use ems_storage_postgres::testing::{fresh_database, pool_store};

async fn stores() -> TestStores {
    let options = fresh_database("ems_test")
        .await
        .expect("the test PostgreSQL (DATABASE_URL) is reachable");
    let a = pool_store(options.clone(), 12)
        .await
        .expect("pool a connects")
        .opening_with_holds(true);
    a.migrate().await.expect("migrations apply");
    let b = pool_store(options, 12)
        .await
        .expect("pool b connects")
        .opening_with_holds(true);
    TestStores::new(Arc::new(a), Arc::new(b))
}

// Only the batched half: with batching off nothing is opened with its hold.
mod holds_batched {
    use super::*;
    ems_core::__conformance_suite!(stores, ems_core::inventory::HoldBatching::On);
}
