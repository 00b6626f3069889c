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
//! applies only what is new, and migrations only ever add. Ids are `uuid`, money
//! is `numeric` beside its ISO currency code, instants are `timestamptz`. Each row
//! keeps the columns SQL needs (keys, states, counters, money, instants) and the
//! record's body as `jsonb`.
//!
//! ## Errors
//!
//! Constraint violations map to the domain error they guard (a unique key to
//! `AlreadyExists`, an overlap to `SoldOut`); a lost connection, a statement
//! timeout, a deadlock or a serialization failure is
//! [`Error::Unavailable`], which [`Error::is_retryable`] reports as retryable.
//! A transaction that fails is rolled back: nothing is half-written.
//!
//! ## Event search
//!
//! Listings walk the `(starts_at, id)` index in keyset order (or
//! `(organization, starts_at, id)` when filtered by organization) and apply the
//! remaining filters on the way:
//!
//! ```text
//! EXPLAIN SELECT doc, starts_at, id FROM ems_events
//!  WHERE (starts_at, id) > ($1, $2) AND status <> 'draft' ORDER BY starts_at, id LIMIT 21;
//!  Limit
//!    ->  Index Scan using ems_events_start_idx on ems_events
//!          Index Cond: (ROW(starts_at, id) > ROW($1, $2))
//!          Filter: (status <> 'draft'::text)
//! ```

mod booking;
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
        Ok(Self { pool })
    }

    /// Uses an existing pool (its settings, its connections).
    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Applies the embedded migrations that this database has not seen yet.
    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => db(e),
            other => ems_core::Error::Backend {
                backend: error::BACKEND,
                source: Box::new(other),
            },
        })
    }

    /// The pool underneath.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}
