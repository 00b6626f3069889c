//! # ems-storage-mongo
//!
//! The MongoDB backend of ems: every storage port of [`ems_core`] on the official
//! [`mongodb`] driver.
//!
//! ```no_run
//! # async fn demo() -> ems_core::Result<()> {
//! use std::sync::Arc;
//! use ems_storage_mongo::MongoStore;
//!
//! let store = MongoStore::connect("mongodb://127.0.0.1:27017/?replicaSet=rs0", "ems").await?;
//! store.ensure_indexes().await?;
//! let ems = ems_core::Ems::builder(Arc::new(store)).build()?;
//! # let _ = ems; Ok(()) }
//! ```
//!
//! ## Document model
//!
//! - An event's document carries its inventory: the tiers and shared quotas, and
//!   the counters of every quota it has as fields of two sub-documents (`taken`,
//!   `cap`, keyed `event`, `t<tier>`, `s<quota>`). A hold takes its units with one
//!   conditional single-document update whose filter states the availability of
//!   every quota it draws on (`taken.k <= cap.k - n`) and the document revision it
//!   priced from, so no oversell is possible even without a transaction, and no
//!   counter ever sits in an array (no positional `$` updates anywhere).
//! - Money is stored twice: exactly and summable as `{minor: Int64, currency}` in
//!   the fields queries use, and as the record's body. Never a double.
//! - Ids are UUIDs written as BSON binary subtype 4 and read leniently (subtype 4,
//!   generic 16-byte binary, or the textual form).
//! - Each document keeps the record's serde body (`body`) and, beside it, the
//!   fields that change after insert or that queries and indexes need; readers
//!   overlay the live fields on the body. No `$lookup` anywhere.
//! - Domain events go to `outbox`; a reader numbers committed, unnumbered events
//!   before reading (polling an indexed sequence, not a change stream).
//!
//! ## Transactions and deployments
//!
//! Every port call that changes several documents (a hold and its counters, a
//! booking and its hold, a confirmation and its tickets, every change and its
//! domain event) runs in a multi-document transaction, retried on
//! `TransientTransactionError`. Transactions need a replica set or a sharded
//! cluster (a single-node replica set is enough). On a standalone server the
//! driver refuses to start them and every changing call returns
//! `Error::NotSupported`; reads still work. The counters' own guarantee does not
//! depend on transactions: it is the conditional single-document update above.
//!
//! ## The test emulator
//!
//! The test command runs the suite against `nx-27017`, a MongoDB wire-protocol
//! server on SQLite (`MONGODB_URL` points it at a real MongoDB instead). The
//! document model needs none of what the emulator is known to get wrong
//! (positional `$` array updates, `Decimal128`, `$lookup`, change streams). The
//! adapter follows MongoDB's semantics; where the emulator differs, the test
//! command selects [`Compatibility::SingleWriterEmulator`], which changes only
//! what is listed here:
//!
//! | MongoDB | nx-27017 | adapter in emulator mode |
//! |---|---|---|
//! | matches BSON binary (UUID subtype 4) values in filters | never matches a binary value | writes ids as text (read leniently either way) |
//! | isolates concurrent transactions (snapshot, write conflicts) | runs every session on one SQLite connection with savepoints: one session's abort rolls back another's writes, and commits fail with `no such savepoint` | one transaction at a time per process |
//! | transactions need a replica set | accepts them on a standalone server | (nothing to do) |
//! | compound index keys may include `_id` | inserts fail (`JSON path error near '_id'`) | no index includes `_id` (in both modes) |
//! | `{f: null}` matches null and missing | inside a compound filter, matches nothing | filters never test for null (in both modes) |
//! | `{f: {$ne: null}}` excludes missing fields | matches missing fields | no filter uses `$ne: null` (in both modes) |
//! | equality on an embedded document compares it whole | a key such as `kind` inside it is read as an operator | a resource kind is stored and compared as its JSON string (in both modes) |
//! | returns UUIDs as binary subtype 4 | returns generic binary (subtype 0) | reads subtype 0, 4 and text |
//!
//! Two processes sharing one emulator are not safe (the emulator does not
//! isolate them); on a real MongoDB they are, and the concurrency stress in the
//! conformance suite runs through two separate clients.

mod booking;
mod bsonx;
mod directory;
mod error;
mod event;
mod facility;
mod inventory;
mod outbox;
mod payment;
mod pricing;
#[cfg(feature = "testing")]
pub mod testing;
mod ticket;
mod tx;

use ems_core::Result;
use mongodb::bson::{doc, Document};
use mongodb::options::IndexOptions;
use mongodb::{Client, Collection, Database, IndexModel};

pub(crate) use error::db;

/// Which server the store talks to, and so which workarounds it applies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compatibility {
    /// A real MongoDB (a replica set or sharded cluster for transactions): ids as
    /// BSON binary subtype 4, transactions isolated by the server. The default.
    #[default]
    MongoDb,
    /// A MongoDB-wire-compatible server that cannot match binary values in
    /// queries and does not isolate concurrent transactions from each other
    /// (the `nx-27017` test emulator runs every session on one SQLite connection,
    /// so one session's abort rolls back another's writes). Ids are written as
    /// text, and this process runs one transaction at a time (all stores in the
    /// process share the turn). Two processes on such a server are not safe.
    SingleWriterEmulator,
}

/// The turn transactions take in [`Compatibility::SingleWriterEmulator`] mode.
pub(crate) static EMULATOR_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An ems store on MongoDB. Cheap to clone (the client is shared).
#[derive(Clone, Debug)]
pub struct MongoStore {
    client: Client,
    db: Database,
    compat: Compatibility,
}

impl MongoStore {
    /// Connects to `url` and uses database `database`.
    pub async fn connect(url: &str, database: &str) -> Result<Self> {
        let client = Client::with_uri_str(url).await.map_err(db)?;
        Ok(Self::from_client(client, database))
    }

    /// Uses an existing client (its pool and settings) and database `database`.
    pub fn from_client(client: Client, database: &str) -> Self {
        let db = client.database(database);
        Self {
            client,
            db,
            compat: Compatibility::MongoDb,
        }
    }

    /// Talks to a server of the given kind (see [`Compatibility`]).
    pub fn with_compatibility(mut self, compat: Compatibility) -> Self {
        self.compat = compat;
        self
    }

    /// Waits for this process's turn to write, where the server needs one.
    pub(crate) async fn turn(&self) -> Option<tokio::sync::MutexGuard<'static, ()>> {
        match self.compat {
            Compatibility::MongoDb => None,
            Compatibility::SingleWriterEmulator => Some(EMULATOR_TURN.lock().await),
        }
    }

    /// A UUID as this store writes it (reads accept both forms).
    pub(crate) fn uid(&self, u: impl Into<uuid::Uuid>) -> mongodb::bson::Bson {
        match self.compat {
            Compatibility::MongoDb => bsonx::uuid_binary(u.into()),
            Compatibility::SingleWriterEmulator => {
                mongodb::bson::Bson::String(u.into().to_string())
            }
        }
    }

    /// An optional UUID (`null` when absent).
    pub(crate) fn uid_opt(&self, u: Option<impl Into<uuid::Uuid>>) -> mongodb::bson::Bson {
        u.map_or(mongodb::bson::Bson::Null, |u| self.uid(u))
    }

    /// The database underneath.
    pub fn database(&self) -> &Database {
        &self.db
    }

    pub(crate) fn col(&self, name: &str) -> Collection<Document> {
        self.db.collection(name)
    }

    /// The record with id `id` in `collection` (its body read as `entity`), in
    /// the transaction `s` or outside any.
    pub(crate) async fn read_by_id<T: serde::de::DeserializeOwned>(
        &self,
        s: Option<&mut mongodb::ClientSession>,
        collection: &str,
        entity: &'static str,
        id: uuid::Uuid,
    ) -> ems_core::Result<Option<T>> {
        let col = self.col(collection);
        let q = col.find_one(mongodb::bson::doc! { "_id": self.uid(id) });
        let d = match s {
            Some(s) => q.session(s).await,
            None => q.await,
        }
        .map_err(db)?;
        d.map(|d| crate::bsonx::from_body(entity, &d)).transpose()
    }

    /// Creates the indexes the store relies on (idempotent): unique idempotency
    /// keys, emails and coupon codes, the event search and booking history orders,
    /// and the lookups every port makes. No index key includes `_id` (the test
    /// emulator rejects writes to collections that have one); on a real MongoDB,
    /// ties within one key are sorted in memory, a few documents at most.
    pub async fn ensure_indexes(&self) -> Result<()> {
        let unique = |keys: Document| {
            IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().unique(true).build())
                .build()
        };
        let plain = |keys: Document| IndexModel::builder().keys(keys).build();
        let specs: Vec<(&str, IndexModel)> = vec![
            ("users", unique(doc! { "email": 1 })),
            ("events", plain(doc! { "starts_at": 1 })),
            ("events", plain(doc! { "organization": 1, "starts_at": 1 })),
            (
                "holds",
                plain(doc! { "event_id": 1, "status": 1, "expires_at": 1 }),
            ),
            ("holds", plain(doc! { "status": 1, "expires_at": 1 })),
            (
                "holds",
                plain(doc! { "status": 1, "booked": 1, "created_at": 1 }),
            ),
            ("bookings", unique(doc! { "customer": 1, "key": 1 })),
            ("bookings", plain(doc! { "customer": 1, "created_at": -1 })),
            ("bookings", plain(doc! { "event_id": 1, "created_at": -1 })),
            ("bookings", plain(doc! { "hold_id": 1 })),
            ("payments", unique(doc! { "key": 1 })),
            ("payments", plain(doc! { "booking_id": 1 })),
            ("payments", plain(doc! { "gateway": 1, "reference": 1 })),
            ("refunds", plain(doc! { "booking_id": 1 })),
            ("tickets", plain(doc! { "booking_id": 1, "seq": 1 })),
            ("coupons", unique(doc! { "organization": 1, "code_key": 1 })),
            ("resources", plain(doc! { "organization": 1, "name": 1 })),
            (
                "facility_bookings",
                plain(doc! { "resource_id": 1, "status": 1, "start": 1 }),
            ),
            ("facility_bookings", plain(doc! { "package": 1, "seq": 1 })),
            (
                "facility_bookings",
                plain(doc! { "event_id": 1, "status": 1 }),
            ),
            ("outbox", plain(doc! { "seq": 1 })),
            ("outbox", plain(doc! { "numbered": 1 })),
        ];
        for (collection, model) in specs {
            self.col(collection).create_index(model).await.map_err(db)?;
        }
        Ok(())
    }
}
