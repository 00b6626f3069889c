//! # ems-storage-postgres
//!
//! The PostgreSQL backend of ems: every storage port of [`ems_core`] on
//! [sqlx](https://docs.rs/sqlx) with a [`PgPool`].
//!
//! Atomicity lives in the database. Each port call is one transaction; an event's
//! row is the lock its inventory changes take (so a hold computes marginal prices
//! from exact counters), counters change only through conditional updates under
//! `CHECK (taken <= capacity)` constraints, idempotency keys are unique indexes,
//! and an `EXCLUDE` constraint keeps exclusive facilities from overlapping. No
//! in-process lock is needed: any number of pools and processes may share a
//! database.
//!
//! A store (and its clones) remembers each hot event as its last hold batch
//! left it, so that the next batch is placed in one statement rather than a
//! transaction of four round trips. That memory is only a guess: the statement
//! writes only while the event's change counter (`ems_events.seq`, moved by
//! every change to what a hold is planned against) is still the remembered
//! one, and otherwise the batch takes the locked path as if nothing were
//! remembered.
//!
//! ```no_run
//! # async fn demo() -> ems_core::Result<()> {
//! use std::sync::Arc;
//! use ems_storage_postgres::PostgresStore;
//!
//! let store = PostgresStore::connect("postgres://127.0.0.1:5432/ems").await?;
//! store.migrate().await?;
//! let ems = ems_core::Ems::builder(Arc::new(store)).build()?;
//! # let _ = ems; Ok(()) }
//! ```
//!
//! ## Schema
//!
//! Migrations are embedded (`migrations/NNNN_name.sql`) and applied by
//! [`PostgresStore::migrate`]; sqlx records each applied version, so upgrading
//! applies only what is new, and no migration drops data (`0002` replaced the
//! bookings', payments' and tickets' foreign keys to the event with composite
//! keys through their hold and booking, so inserts never lock the event's row;
//! `0003` added the event's change counter; `0005` a `json` column beside the
//! `jsonb` one for the documents of holds, bookings and payments, below).
//! Ids are `uuid`, money
//! is `numeric` beside its ISO currency code, instants are `timestamptz`. Each row
//! keeps the columns SQL needs (keys, states, counters, money, instants) and the
//! record's body as JSON.
//!
//! ## Documents as `json`
//!
//! A checkout writes about 3 kB of documents (its hold, booking and payment
//! record). Kept as `jsonb`, the server parses each into its binary form on
//! the way in, which on a hot on-sale was about a quarter of a batch's time
//! at the server; kept as `json` it only checks the text and stores it as
//! sent. Only this store reads those documents, and only whole, so nothing
//! is lost. Since `0005` each of those rows keeps its document either in
//! `doc` (`jsonb`) or in `body` (`json`), and this version reads either.
//! Versions before `0005` read only `doc`, so where they may still share the
//! database, documents keep going to `doc`:
//!
//! - a new database ([`PostgresStore::migrate`] finds no ems tables) writes
//!   `json` from the start;
//! - an upgraded one writes `jsonb` until
//!   [`PostgresStore::write_documents_as_json`] is called, once every process
//!   sharing it runs this version or later (the setting lives in the
//!   database, `ems_settings`; a store reads it the first time it writes).
//!
//! Events, tiers, quotas, coupons, tickets, refunds and domain events keep
//! `jsonb`.
//!
//! `migrate` then creates one PL/pgSQL function per batch statement (a
//! checkout batch's openings, its settlements, a hot event's holds with their
//! bookings), named `ems_batch_*_<hash of the statement>`: the function
//! carries the planner setting the statement needs (`enable_seqscan = off`,
//! so that the plan it keeps reaches rows through their indexes even when
//! made on small tables), which lets a batch run as one statement committed
//! with its answer, one round trip instead of three. A new version of a
//! statement is a new function, so processes of different versions can share
//! a database; on a database without them (migrated by other means), batches
//! run their statements in transactions of their own, as before.
//!
//! ## Errors
//!
//! Constraint violations map to the domain error they guard (a unique key to
//! `AlreadyExists`, an overlap to `SoldOut`); a lost connection, a statement
//! timeout, a deadlock or a serialization failure is
//! [`Error::Unavailable`](ems_core::Error::Unavailable), which
//! [`Error::is_retryable`](ems_core::Error::is_retryable) reports as retryable.
//! A transaction that fails is rolled back: nothing is half-written.
//!
//! ## Event search
//!
//! A listing is one statement holding only the filters in use (so each
//! combination gets a plan of its own) and walks the `(starts_at, id)` index in
//! keyset order, or `(organization, starts_at, id)` for one organization;
//! expression statistics on the case-insensitive filters keep the planner on the
//! index. On 100,000 events (50 organizations, 3 categories, 4 cities), the second
//! page of "concerts in Berlin" and an organization's listing:
//!
//! ```text
//! EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) SELECT id, doc, starts_at FROM ems_events
//!   WHERE true AND (starts_at, id) > ($1, $2) AND lower(btrim(category)) = lower($3)
//!   AND lower(btrim(city)) = lower($4) AND status <> 'draft' ORDER BY starts_at, id LIMIT $5;
//!  Limit (actual rows=21 loops=1)
//!    ->  Index Scan using ems_events_start_idx on ems_events (actual rows=21 loops=1)
//!          Index Cond: (ROW(starts_at, id) > ROW('2030-03-01 00:00:00+00'::timestamp with time zone, '00000000-0000-0000-0000-000000000000'::uuid))
//!          Filter: ((status <> 'draft'::text) AND (lower(btrim(category)) = 'concert'::text) AND (lower(btrim(city)) = 'berlin'::text))
//!          Rows Removed by Filter: 280
//!  Execution Time: 0.450 ms
//!
//! EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) SELECT id, doc, starts_at FROM ems_events
//!   WHERE true AND organization = $1 AND starts_at >= $2 ORDER BY starts_at, id LIMIT $3;
//!  Limit (actual rows=21 loops=1)
//!    ->  Index Scan using ems_events_org_start_idx on ems_events (actual rows=21 loops=1)
//!          Index Cond: ((organization = '00000000-0000-0000-0000-000000000007'::uuid) AND (starts_at >= '2030-06-01 00:00:00+00'::timestamp with time zone))
//!  Execution Time: 0.141 ms
//! ```
//!
//! Text search (`ILIKE` on title and description) filters along the same walk;
//! a deployment with very many events and frequent text queries would add a
//! trigram (`pg_trgm`) index, which this schema leaves to the operator.

mod batch_fn;
mod booking;
mod checkout;
mod directory;
mod error;
mod event;
mod facility;
mod inventory;
mod outbox;
mod payment;
mod pricing;
mod row;
#[cfg(feature = "testing")]
pub mod testing;
mod ticket;

use std::str::FromStr;
use std::time::Duration;

use ems_core::Result;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

pub(crate) use error::db;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// An ems store on PostgreSQL. Cheap to clone (the pool is shared).
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
    /// Hot events as this store's last hold batch of each left them, shared
    /// by clones (see `inventory::KnownEvents`).
    known: std::sync::Arc<inventory::KnownEvents>,
    /// See [`PostgresStore::opening_with_holds`].
    open_with_holds: bool,
    /// Whether the database has the batch statements' functions, shared by
    /// clones (see `batch_fn`).
    functions: std::sync::Arc<batch_fn::BatchFunctions>,
    /// Where this store writes documents, shared by clones (see `row::Docs`).
    docs: std::sync::Arc<row::DocsSetting>,
}

impl PostgresStore {
    /// Connects a pool to `url` (`postgres://user@host:port/database?options`)
    /// with default pool settings: up to 16 connections, 5 s to acquire one.
    pub async fn connect(url: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url).map_err(db)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(db)?;
        Ok(Self::from_pool(pool))
    }

    /// Uses an existing pool (its settings, its connections).
    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            pool,
            known: Default::default(),
            open_with_holds: true,
            functions: Default::default(),
            docs: Default::default(),
        }
    }

    /// With `on` (the default), a batching service opens each checkout's
    /// booking in the same statement as its hold on a hot event
    /// ([`CheckoutStore::opens_with_holds`](ems_core::booking::CheckoutStore::opens_with_holds)):
    /// a checkout then waits for two batches instead of three (hold, opening,
    /// settlement), one commit fewer. That helps where checkouts are bound by
    /// their latency (tens of concurrent buyers on one event: +20–40 % on the
    /// hot on-sale bench at 32 buyers, +8–23 % spread over 1,000 events) and
    /// is about even where the server's CPU is the limit (256 buyers: the
    /// three separate queues run their batches at once, the combined one does
    /// two stages' work in turn). `false` keeps the three stages apart;
    /// BENCHMARKS.md has the figures.
    pub fn opening_with_holds(mut self, on: bool) -> Self {
        self.open_with_holds = on;
        self
    }

    /// Applies the embedded migrations that this database has not seen yet,
    /// then creates the functions of this version's batch statements if the
    /// database lacks them (each named after a hash of its statement, so
    /// several versions can share a database; see the crate docs).
    ///
    /// On a new database (no ems tables yet) the documents of holds, bookings
    /// and payments are then written as `json` from the start; on one that
    /// earlier versions use, as `jsonb` until
    /// [`write_documents_as_json`](Self::write_documents_as_json).
    pub async fn migrate(&self) -> Result<()> {
        let new: bool = sqlx::query_scalar("SELECT to_regclass('ems_events') IS NULL")
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        MIGRATOR.run(&self.pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => db(e),
            other => ems_core::Error::Backend {
                backend: error::BACKEND,
                source: Box::new(other),
            },
        })?;
        if new {
            self.write_documents_as_json().await?;
        }
        batch_fn::create_batch_functions(&self.pool).await?;
        self.functions.set(true);
        Ok(())
    }

    /// Writes the documents of holds, bookings and payments as `json` from now
    /// on, in this store and in every store of this version or later that
    /// opens the database after this call (stores already running keep their
    /// format until they are opened anew; every format is read by all of them).
    ///
    /// As `json` the server keeps a document's text as sent instead of parsing
    /// it into `jsonb`: on a hot on-sale that is about a quarter of a batch's
    /// time at the server (BENCHMARKS.md). Versions before migration `0005`
    /// read only `jsonb` documents, so call this once none of them uses the
    /// database any more; [`migrate`](Self::migrate) does it itself on a new
    /// database.
    pub async fn write_documents_as_json(&self) -> Result<()> {
        sqlx::query(
            "INSERT INTO ems_settings (name, value) VALUES ('documents', 'json') \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        self.docs.set(row::Docs::Json);
        Ok(())
    }

    /// Where this store writes documents (looked up once).
    pub(crate) async fn docs(&self) -> row::Docs {
        self.docs.get(&self.pool).await
    }

    /// The pool underneath.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}
