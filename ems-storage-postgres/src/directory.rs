use async_trait::async_trait;
use ems_core::directory::{DirectoryStore, Organization, UserProfile};
use ems_core::id::{OrganizationId, UserId};
use ems_core::outbox::DomainEvent;
use ems_core::{Error, Result};

use crate::row::{begin, commit, from_doc, get, json, record, tag};
use crate::{db, PostgresStore};

#[async_trait]
impl DirectoryStore for PostgresStore {
    async fn insert_organization(&self, org: &Organization) -> Result<()> {
        let mut tx = begin(&self.pool).await?;
        let inserted = sqlx::query(
            "INSERT INTO ems_organizations (id, name, created_at, doc) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(org.id.0)
        .bind(&org.name)
        .bind(org.created_at)
        .bind(json(org)?)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        if inserted == 0 {
            return Err(Error::already_exists("organization", "id", org.id));
        }
        record(
            &mut tx,
            org.created_at,
            [DomainEvent::OrganizationCreated {
                organization: org.id,
            }],
        )
        .await?;
        commit(tx).await
    }

    async fn organization(&self, id: OrganizationId) -> Result<Option<Organization>> {
        let row = sqlx::query("SELECT doc FROM ems_organizations WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.map(|r| from_doc("organization", id, get(&r, "doc")?))
            .transpose()
    }

    async fn insert_user(&self, user: &UserProfile) -> Result<()> {
        let email = user.email.to_lowercase();
        let mut tx = begin(&self.pool).await?;
        let result = sqlx::query(
            "INSERT INTO ems_users (id, email, role, organization, created_at, doc) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(user.id.0)
        .bind(&email)
        .bind(tag(&user.role))
        .bind(user.organization.map(|o| o.0))
        .bind(user.created_at)
        .bind(json(user)?)
        .execute(&mut *tx)
        .await;
        if let Err(e) = result {
            return Err(match db(e) {
                Error::AlreadyExists { entity, field, .. } => Error::AlreadyExists {
                    entity,
                    field,
                    value: if field == "email" {
                        email
                    } else {
                        user.id.to_string()
                    },
                },
                other => other,
            });
        }
        record(
            &mut tx,
            user.created_at,
            [DomainEvent::UserRegistered { user: user.id }],
        )
        .await?;
        commit(tx).await
    }

    async fn user(&self, id: UserId) -> Result<Option<UserProfile>> {
        let row = sqlx::query("SELECT doc FROM ems_users WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.map(|r| from_doc("user", id, get(&r, "doc")?))
            .transpose()
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserProfile>> {
        let email = email.trim().to_lowercase();
        let row = sqlx::query("SELECT id, doc FROM ems_users WHERE email = $1")
            .bind(&email)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.map(|r| from_doc("user", get::<uuid::Uuid>(&r, "id")?, get(&r, "doc")?))
            .transpose()
    }
}
