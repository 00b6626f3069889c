//! Throwaway databases for tests and benchmarks (feature `testing`).
//!
//! The server comes from `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). Each call creates a new
//! database with a unique name, so tests run in parallel and never see each
//! other's rows. An unreachable server is an error, never a silent skip.

use std::str::FromStr;
use std::time::Duration;

use ems_core::{Error, Result};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};

use crate::{db, PostgresStore};

/// The server tests run against when `DATABASE_URL` is not set.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The server URL tests use.
pub fn server_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// Creates an empty database named `<prefix>_<random>` on the test server and
/// returns options to connect to it.
pub async fn fresh_database(prefix: &str) -> Result<PgConnectOptions> {
    let url = server_url();
    let options = PgConnectOptions::from_str(&url).map_err(db)?;
    let mut admin = options.connect().await.map_err(|e| Error::Unavailable {
        retry_after: None,
        source: format!("cannot reach the test PostgreSQL at {url}: {e}").into(),
    })?;
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .map_err(db)?;
    admin.close().await.map_err(db)?;
    Ok(options.database(&name))
}

/// A migrated store on a fresh database, with a pool of up to `connections`.
pub async fn fresh_store(prefix: &str, connections: u32) -> Result<PostgresStore> {
    let options = fresh_database(prefix).await?;
    let store = pool_store(options, connections).await?;
    store.migrate().await?;
    Ok(store)
}

/// A store with its own pool on the database `options` name.
pub async fn pool_store(options: PgConnectOptions, connections: u32) -> Result<PostgresStore> {
    let pool = PgPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options)
        .await
        .map_err(db)?;
    Ok(PostgresStore::from_pool(pool))
}
