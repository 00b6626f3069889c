use async_trait::async_trait;
use ems_core::directory::{DirectoryStore, Organization, UserProfile};
use ems_core::id::{OrganizationId, UserId};
use ems_core::outbox::DomainEvent;
use ems_core::{Error, Result};
use mongodb::bson::doc;

use crate::bsonx::{body, date, from_body, tag};
use crate::error::is_duplicate;
use crate::outbox::record;
use crate::tx::transaction;
use crate::{db, MongoStore};

#[async_trait]
impl DirectoryStore for MongoStore {
    async fn insert_organization(&self, org: &Organization) -> Result<()> {
        transaction!(self, |s| {
            let inserted = self
                .col("organizations")
                .insert_one(doc! {
                    "_id": self.uid(org.id.0),
                    "name": &org.name,
                    "created_at": date(org.created_at),
                    "body": body(org)?,
                })
                .session(&mut s)
                .await;
            match inserted {
                Err(e) if is_duplicate(&e) => {
                    return Err(Error::already_exists("organization", "id", org.id))
                }
                other => other.map_err(db)?,
            };
            record(
                self,
                &mut s,
                org.created_at,
                [DomainEvent::OrganizationCreated {
                    organization: org.id,
                }],
            )
            .await
        })
    }

    async fn organization(&self, id: OrganizationId) -> Result<Option<Organization>> {
        self.col("organizations")
            .find_one(doc! { "_id": self.uid(id.0) })
            .await
            .map_err(db)?
            .map(|d| from_body("organization", &d))
            .transpose()
    }

    async fn insert_user(&self, user: &UserProfile) -> Result<()> {
        let email = user.email.to_lowercase();
        transaction!(self, |s| {
            if self
                .col("users")
                .find_one(doc! { "_id": self.uid(user.id.0) })
                .session(&mut s)
                .await
                .map_err(db)?
                .is_some()
            {
                return Err(Error::already_exists("user", "id", user.id));
            }
            let inserted = self
                .col("users")
                .insert_one(doc! {
                    "_id": self.uid(user.id.0),
                    "email": &email,
                    "role": tag(&user.role),
                    "organization": self.uid_opt(user.organization.map(|o| o.0)),
                    "created_at": date(user.created_at),
                    "body": body(user)?,
                })
                .session(&mut s)
                .await;
            match inserted {
                Err(e) if is_duplicate(&e) => {
                    return Err(Error::already_exists("user", "email", &email))
                }
                other => other.map_err(db)?,
            };
            record(
                self,
                &mut s,
                user.created_at,
                [DomainEvent::UserRegistered { user: user.id }],
            )
            .await
        })
    }

    async fn user(&self, id: UserId) -> Result<Option<UserProfile>> {
        self.col("users")
            .find_one(doc! { "_id": self.uid(id.0) })
            .await
            .map_err(db)?
            .map(|d| from_body("user", &d))
            .transpose()
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserProfile>> {
        self.col("users")
            .find_one(doc! { "email": email.trim().to_lowercase() })
            .await
            .map_err(db)?
            .map(|d| from_body("user", &d))
            .transpose()
    }
}
