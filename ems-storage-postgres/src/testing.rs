//! Throwaway databases for tests and benchmarks (feature `testing`).
//!
//! The server comes from `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). Each call creates a new
//! database with a unique name, so tests run in parallel and never see each
//! other's rows. An unreachable server is an error, never a silent skip.
//!
//! The names carry their creation time ([`ems_core::testkit::throwaway`]), and
//! the first call of each process for a prefix drops that prefix's databases
//! left by runs more than an hour ago (one still in use stays for a later
//! sweep), so they do not pile up on the server.

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use ems_core::testkit::throwaway;
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

/// Creates an empty database named `<prefix>_<uuid v7>` on the test server and
/// returns options to connect to it; see [`throwaway::name`] for what a prefix
/// may be. The first call for each prefix in a process also drops that
/// prefix's stale databases ([`throwaway::is_stale`]).
pub async fn fresh_database(prefix: &str) -> Result<PgConnectOptions> {
    let name = throwaway::name(prefix)?;
    let url = server_url();
    let options = PgConnectOptions::from_str(&url).map_err(db)?;
    let mut admin = options.connect().await.map_err(|e| Error::Unavailable {
        retry_after: None,
        source: format!("cannot reach the test PostgreSQL at {url}: {e}").into(),
    })?;
    if throwaway::first_for("postgres", prefix) {
        drop_stale(&mut admin, prefix).await?;
    }
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .map_err(db)?;
    admin.close().await.map_err(db)?;
    Ok(options.database(&name))
}

/// Drops `prefix`'s stale throwaway databases. One still in use (a run that
/// has gone on that long) or dropped meanwhile by another run is left alone.
async fn drop_stale(admin: &mut sqlx::PgConnection, prefix: &str) -> Result<()> {
    let names: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database")
        .fetch_all(&mut *admin)
        .await
        .map_err(db)?;
    let now = SystemTime::now();
    for name in names.iter().filter(|n| throwaway::is_stale(n, prefix, now)) {
        // A stale name is a checked prefix, '_' and hex digits: safe unquoted.
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
            .execute(&mut *admin)
            .await;
    }
    Ok(())
}

/// A migrated store on a fresh database, with a pool of up to `connections`.
pub async fn fresh_store(prefix: &str, connections: u32) -> Result<PostgresStore> {
    let options = fresh_database(prefix).await?;
    let store = pool_store(options, connections).await?;
    store.migrate().await?;
    Ok(store)
}

/// Migrates the database `options` name through a pool of its own, then
/// removes the setting that makes a new database write documents as `json`:
/// the database is then as one upgraded from a version before migration
/// `0005` and not yet switched ([`PostgresStore::write_documents_as_json`]).
/// Stores opened on it afterwards write documents as `jsonb`.
pub async fn migrate_writing_jsonb(options: PgConnectOptions) -> Result<()> {
    let migrator = pool_store(options, 1).await?;
    migrator.migrate().await?;
    sqlx::query("DELETE FROM ems_settings WHERE name = 'documents'")
        .execute(migrator.pool())
        .await
        .map_err(db)?;
    migrator.pool().close().await;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_call_drops_its_prefixs_stale_databases_only() {
        let options = PgConnectOptions::from_str(&server_url()).unwrap();
        let mut admin = options.connect().await.expect("the test PostgreSQL");
        let throwaway::SweepCase {
            prefix,
            stale,
            recent,
        } = throwaway::SweepCase::new();
        for name in [&stale, &recent] {
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut admin)
                .await
                .unwrap();
        }

        let fresh = fresh_database(&prefix).await.unwrap();

        let left: Vec<String> =
            sqlx::query_scalar("SELECT datname FROM pg_database WHERE starts_with(datname, $1)")
                .bind(&prefix)
                .fetch_all(&mut admin)
                .await
                .unwrap();
        let fresh = fresh.get_database().unwrap().to_owned();
        for name in [&recent, &fresh] {
            sqlx::query(&format!("DROP DATABASE {name}"))
                .execute(&mut admin)
                .await
                .unwrap();
        }
        assert!(!left.contains(&stale), "the stale database is dropped");
        assert!(left.contains(&recent), "a recent one is kept");
        assert!(left.contains(&fresh));
        assert_eq!(left.len(), 2);
    }

    #[tokio::test]
    async fn a_prefix_that_cannot_name_a_database_is_refused_before_connecting() {
        let err = fresh_database("Not-A-Prefix").await.unwrap_err();
        assert!(matches!(&err, Error::InvalidInput { field, .. } if *field == "prefix"));
    }
}
