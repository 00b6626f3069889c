//! Malformed documents read back (a field missing or of the wrong type) give
//! `Error::Corrupt` naming the document, never a panic and never a wrong answer;
//! documents in the shape an earlier version wrote are still read right.

use std::sync::Arc;

use ems_core::testkit::{Fixture, TestStores};
use ems_core::{Actor, Error};
use ems_storage_mongo::testing::{compatibility, fresh_store};
use ems_storage_mongo::{Compatibility, MongoStore};
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{doc, Binary, Bson, Document};

async fn world() -> (Fixture, MongoStore) {
    let store = fresh_store("ems_test")
        .await
        .expect("the test MongoDB (MONGODB_URL) is reachable");
    let stores = TestStores::new(Arc::new(store.clone()), Arc::new(store.clone()));
    (Fixture::new(stores).await, store)
}

/// An id as the store wrote it.
fn id(u: uuid::Uuid) -> Bson {
    match compatibility() {
        Compatibility::SingleWriterEmulator => Bson::String(u.to_string()),
        _ => Bson::Binary(Binary {
            subtype: BinarySubtype::Uuid,
            bytes: u.as_bytes().to_vec(),
        }),
    }
}

async fn tamper(store: &MongoStore, collection: &str, id: Bson, update: Document) {
    let r = store
        .database()
        .collection::<Document>(collection)
        .update_one(doc! { "_id": id }, update)
        .await
        .expect("the document is updated");
    assert_eq!(r.matched_count, 1, "the {collection} document exists");
}

fn assert_corrupt(err: Error, entity: &str, id: uuid::Uuid, mentions: &str) {
    match err {
        Error::Corrupt {
            entity: e,
            id: i,
            reason,
        } => {
            assert_eq!(e, entity);
            assert_eq!(i, id.to_string(), "the error names the document");
            assert!(
                reason.contains(mentions),
                "the reason `{reason}` says what is wrong ({mentions})"
            );
        }
        other => panic!("expected a corruption error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_missing_a_field_is_corrupt() {
    let (f, store) = world().await;
    let (e, _) = f.published_event(10, &[("GA", "10", 10)]).await;
    tamper(
        &store,
        "events",
        id(e.id.0),
        doc! { "$unset": { "body.title": "" } },
    )
    .await;
    let err = f
        .ems
        .event(&f.organizer, e.id)
        .await
        .expect_err("a malformed event is not returned");
    assert_corrupt(err, "event", e.id.0, "title");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_of_the_wrong_type_is_corrupt_and_nothing_is_sold() {
    let (f, store) = world().await;
    let (e, tiers) = f.published_event(10, &[("GA", "10", 10)]).await;
    tamper(
        &store,
        "events",
        id(e.id.0),
        doc! { "$set": { "taken.event": "many" } },
    )
    .await;
    let err = f
        .ems
        .availability(&f.organizer, e.id)
        .await
        .expect_err("availability over a malformed counter is refused");
    assert_corrupt(err, "event", e.id.0, "taken");

    let buyer = f.customer();
    let err = f
        .ems
        .checkout(&buyer, f.order(e.id, tiers[0].id, 2, "corrupt-counter"))
        .await
        .expect_err("no hold on a malformed counter");
    assert!(matches!(err, Error::Corrupt { .. }), "got {err:?}");
    let holds = store
        .database()
        .collection::<Document>("holds")
        .count_documents(doc! {})
        .await
        .expect("holds countable");
    assert_eq!(holds, 0, "nothing was half-written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn booking_body_of_the_wrong_type_is_corrupt() {
    let (f, store) = world().await;
    let (e, tiers) = f.published_event(10, &[("GA", "10", 10)]).await;
    let buyer = f.customer();
    let checkout = f.buy(&buyer, e.id, tiers[0].id, 1).await;
    let booking = checkout.booking.id;
    tamper(
        &store,
        "bookings",
        id(booking.0),
        doc! { "$set": { "body.lines": "three" } },
    )
    .await;
    let err = f
        .ems
        .booking(&Actor::System, booking)
        .await
        .expect_err("a malformed booking is not returned");
    assert_corrupt(err, "booking", booking.0, "lines");
}

/// Holds written before they carried their organization at the top of the
/// document tell their owner all the same (read from the whole hold); one
/// whose organization is not an id is `Corrupt`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_without_a_top_level_organization_still_tells_its_owner() {
    use ems_core::inventory::{HoldItem, HoldOptions, HoldOwner, InventoryStore};
    let (f, store) = world().await;
    let (e, tiers) = f.published_event(10, &[("GA", "10", 10)]).await;
    let items = [HoldItem {
        tier_id: tiers[0].id,
        quantity: 2,
    }];
    let hold = f
        .ems
        .place_hold(&f.customer(), e.id, &items, HoldOptions::default())
        .await
        .expect("held");
    let owner = Some(HoldOwner::of(&hold));
    assert_eq!(store.hold_owner(hold.id).await.expect("readable"), owner);

    tamper(
        &store,
        "holds",
        id(hold.id.0),
        doc! { "$unset": { "organization": "" } },
    )
    .await;
    assert_eq!(
        store.hold_owner(hold.id).await.expect("readable"),
        owner,
        "read from the whole hold"
    );

    tamper(
        &store,
        "holds",
        id(hold.id.0),
        doc! { "$set": { "organization": 42 } },
    )
    .await;
    let err = store
        .hold_owner(hold.id)
        .await
        .expect_err("a malformed hold tells no owner");
    assert_corrupt(err, "hold", hold.id.0, "UUID");
}
