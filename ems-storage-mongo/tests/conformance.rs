//! The shared conformance suite on MongoDB: every scenario on its own fresh
//! database, through two separate clients (as two server processes would have).

use std::sync::Arc;

use ems_core::testkit::TestStores;
use ems_storage_mongo::testing::{compatibility, fresh_store};
use ems_storage_mongo::MongoStore;

async fn stores() -> TestStores {
    let a = fresh_store("ems_test")
        .await
        .expect("the test MongoDB (MONGODB_URL) is reachable");
    let client_b = ems_storage_mongo::testing::client()
        .await
        .expect("a second client connects");
    let b =
        MongoStore::from_client(client_b, a.database().name()).with_compatibility(compatibility());
    TestStores::new(Arc::new(a), Arc::new(b))
}

ems_core::conformance_tests!(stores);
