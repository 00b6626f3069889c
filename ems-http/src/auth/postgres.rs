//! Credentials in PostgreSQL, beside the ems tables, so that every server
//! process over the database shares logins, token families and resets.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ems_core::id::UserId;
use ems_core::{Error, Result};
use sqlx::PgPool;
use uuid::Uuid;

use super::store::{CredentialStore, RefreshRecord, RefreshUse, TokenDigest};

/// The schema, applied by [`PostgresCredentials::ensure_schema`]: additive,
/// idempotent statements only.
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS ems_http_passwords (
        user_id uuid PRIMARY KEY,
        phc text NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now())",
    "CREATE TABLE IF NOT EXISTS ems_http_refresh_tokens (
        digest bytea PRIMARY KEY CHECK (length(digest) = 32),
        family uuid NOT NULL,
        user_id uuid NOT NULL,
        expires_at timestamptz NOT NULL,
        used boolean NOT NULL DEFAULT false)",
    "CREATE INDEX IF NOT EXISTS ems_http_refresh_tokens_user ON ems_http_refresh_tokens (user_id)",
    "CREATE INDEX IF NOT EXISTS ems_http_refresh_tokens_family ON ems_http_refresh_tokens (family)",
    "CREATE TABLE IF NOT EXISTS ems_http_revoked_families (
        family uuid PRIMARY KEY,
        revoked_at timestamptz NOT NULL DEFAULT now())",
    "CREATE TABLE IF NOT EXISTS ems_http_password_resets (
        digest bytea PRIMARY KEY CHECK (length(digest) = 32),
        user_id uuid NOT NULL,
        expires_at timestamptz NOT NULL)",
];

fn db(e: sqlx::Error) -> Error {
    let retryable = matches!(
        e,
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
    ) || matches!(&e, sqlx::Error::Database(d) if d.code().is_some_and(|c| c.starts_with("40") || c.starts_with("57") || c.starts_with("08")));
    if retryable {
        Error::Unavailable {
            retry_after: None,
            source: Box::new(e),
        }
    } else {
        Error::Backend {
            backend: "postgres",
            source: Box::new(e),
        }
    }
}

/// A [`CredentialStore`] on a PostgreSQL pool (the ems store's, typically).
#[derive(Debug, Clone)]
pub struct PostgresCredentials {
    pool: PgPool,
}

impl PostgresCredentials {
    /// Uses `pool`; call [`PostgresCredentials::ensure_schema`] once.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Creates the credential tables if they are missing (safe to run from
    /// several processes at once).
    pub async fn ensure_schema(&self) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('ems_http_schema'))")
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        for statement in SCHEMA {
            sqlx::query(statement).execute(&mut *tx).await.map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }
}

#[async_trait]
impl CredentialStore for PostgresCredentials {
    async fn set_password(&self, user: UserId, phc: String) -> Result<()> {
        sqlx::query(
            "INSERT INTO ems_http_passwords (user_id, phc) VALUES ($1, $2)
             ON CONFLICT (user_id) DO UPDATE SET phc = excluded.phc, updated_at = now()",
        )
        .bind(user.0)
        .bind(phc)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn password(&self, user: UserId) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT phc FROM ems_http_passwords WHERE user_id = $1")
            .bind(user.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)
    }

    async fn insert_refresh(&self, record: RefreshRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO ems_http_refresh_tokens (digest, family, user_id, expires_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(record.digest.as_slice())
        .bind(record.family)
        .bind(record.user.0)
        .bind(record.expires_at)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn use_refresh(&self, digest: TokenDigest, now: DateTime<Utc>) -> Result<RefreshUse> {
        // Spending is one conditional update: of two concurrent uses, exactly
        // one finds the token unused.
        let spent: Option<(Uuid, Uuid, DateTime<Utc>, bool)> = sqlx::query_as(
            "UPDATE ems_http_refresh_tokens t SET used = true
             WHERE digest = $1 AND NOT used
             RETURNING family, user_id, expires_at,
               EXISTS (SELECT 1 FROM ems_http_revoked_families r WHERE r.family = t.family)",
        )
        .bind(digest.as_slice())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        let (family, user, expires_at, revoked) = match spent {
            Some(row) => row,
            None => {
                let known: Option<(Uuid, Uuid)> = sqlx::query_as(
                    "SELECT family, user_id FROM ems_http_refresh_tokens WHERE digest = $1",
                )
                .bind(digest.as_slice())
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
                let Some((family, user)) = known else {
                    return Ok(RefreshUse::Unknown);
                };
                self.revoke_family(family).await?;
                return Ok(RefreshUse::Reused {
                    family,
                    user: UserId(user),
                });
            }
        };
        if revoked {
            return Ok(RefreshUse::Reused {
                family,
                user: UserId(user),
            });
        }
        if expires_at <= now {
            return Ok(RefreshUse::Unknown);
        }
        Ok(RefreshUse::Fresh(RefreshRecord {
            digest,
            family,
            user: UserId(user),
            expires_at,
        }))
    }

    async fn revoke_family(&self, family: Uuid) -> Result<bool> {
        let known: bool = sqlx::query_scalar(
            "WITH revoke AS (
               INSERT INTO ems_http_revoked_families (family) VALUES ($1)
               ON CONFLICT (family) DO NOTHING)
             SELECT EXISTS (SELECT 1 FROM ems_http_refresh_tokens WHERE family = $1)",
        )
        .bind(family)
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        Ok(known)
    }

    async fn revoke_user(&self, user: UserId) -> Result<()> {
        sqlx::query(
            "INSERT INTO ems_http_revoked_families (family)
             SELECT DISTINCT family FROM ems_http_refresh_tokens WHERE user_id = $1
             ON CONFLICT (family) DO NOTHING",
        )
        .bind(user.0)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn insert_reset(
        &self,
        digest: TokenDigest,
        user: UserId,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO ems_http_password_resets (digest, user_id, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(digest.as_slice())
        .bind(user.0)
        .bind(expires_at)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn take_reset(&self, digest: TokenDigest, now: DateTime<Utc>) -> Result<Option<UserId>> {
        let row: Option<(Uuid, DateTime<Utc>)> = sqlx::query_as(
            "DELETE FROM ems_http_password_resets WHERE digest = $1 RETURNING user_id, expires_at",
        )
        .bind(digest.as_slice())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(row
            .filter(|(_, expires)| *expires > now)
            .map(|(user, _)| UserId(user)))
    }
}
