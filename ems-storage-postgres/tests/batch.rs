//! Batched holds on PostgreSQL: one transaction grants, in arrival order, every
//! request that fits and refuses the rest exactly as each would be refused alone.

use std::sync::Arc;

use chrono::Duration;
use ems_core::id::{HoldId, UserId};
use ems_core::inventory::{HoldItem, HoldRequest, InventoryStore};
use ems_core::testkit::{Fixture, TestStores};
use ems_core::Error;
use ems_storage_postgres::testing::fresh_store;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_grants_what_fits_in_arrival_order() {
    let store = fresh_store("ems_test", 4)
        .await
        .expect("the test PostgreSQL (DATABASE_URL) is reachable");
    let f = Fixture::new(TestStores::new(
        Arc::new(store.clone()),
        Arc::new(store.clone()),
    ))
    .await;
    let (event, tiers) = f.published_event(5, &[("GA", "10", 5)]).await;
    let now = f.clock_now();
    let request = |quantity| HoldRequest {
        id: HoldId::new(),
        event_id: event.id,
        customer: UserId::new(),
        items: vec![HoldItem {
            tier_id: tiers[0].id,
            quantity,
        }],
        now,
        expires_at: now + Duration::minutes(10),
        coupon: None,
    };
    let zero = request(0);
    let batch = [request(3), request(3), zero, request(2), request(1)];
    let results = store.try_hold_batch(&batch).await;
    assert_eq!(results.len(), 5);
    assert!(results[0].is_ok(), "{:?}", results[0]);
    assert!(
        matches!(
            results[1],
            Err(Error::SoldOut {
                available: 2,
                requested: 3,
                ..
            })
        ),
        "{:?}",
        results[1]
    );
    assert!(
        matches!(results[2], Err(Error::InvalidInput { .. })),
        "a request's own rules apply to it alone: {:?}",
        results[2]
    );
    assert!(results[3].is_ok(), "a later request that fits is granted");
    assert!(matches!(
        results[4],
        Err(Error::SoldOut { available: 0, .. })
    ));
    assert_eq!(f.available(event.id, tiers[0].id).await, 0);
    assert_eq!(f.event_taken(event.id).await, 5);
    // Each granted hold is stored as returned.
    for r in results.iter().flatten() {
        let stored = store.hold(r.id).await.expect("readable").expect("stored");
        assert_eq!(&stored, r);
    }
    // Marginal positions stay exact: the second grant starts where the first ended.
    let first = results[0].as_ref().expect("granted");
    let second = results[3].as_ref().expect("granted");
    assert_eq!(first.quote.lines[0].first_position, 0);
    assert_eq!(second.quote.lines[0].first_position, 3);
}
