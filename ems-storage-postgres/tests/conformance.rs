//! The shared conformance suite on PostgreSQL: every scenario on its own fresh
//! database, through two separate pools (as two server processes would have).

use std::sync::Arc;

use ems_core::testkit::TestStores;
use ems_storage_postgres::testing::{fresh_database, pool_store};

async fn stores() -> TestStores {
    let options = fresh_database("ems_test")
        .await
        .expect("the test PostgreSQL (DATABASE_URL) is reachable");
    let a = pool_store(options.clone(), 12)
        .await
        .expect("pool a connects");
    a.migrate().await.expect("migrations apply");
    let b = pool_store(options, 12).await.expect("pool b connects");
    TestStores::new(Arc::new(a), Arc::new(b))
}

ems_core::conformance_tests!(stores);
