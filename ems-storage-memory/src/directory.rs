use async_trait::async_trait;
use ems_core::directory::{DirectoryStore, Organization, UserProfile};
use ems_core::id::{OrganizationId, UserId};
use ems_core::outbox::DomainEvent;
use ems_core::{Error, Result};

use crate::MemoryStore;

#[async_trait]
impl DirectoryStore for MemoryStore {
    async fn insert_organization(&self, org: &Organization) -> Result<()> {
        let mut d = self.inner.directory.write();
        if d.organizations.contains_key(&org.id) {
            return Err(Error::already_exists("organization", "id", org.id));
        }
        d.organizations.insert(org.id, org.clone());
        self.record(
            org.created_at,
            [DomainEvent::OrganizationCreated {
                organization: org.id,
            }],
        );
        Ok(())
    }

    async fn organization(&self, id: OrganizationId) -> Result<Option<Organization>> {
        Ok(self.inner.directory.read().organizations.get(&id).cloned())
    }

    async fn insert_user(&self, user: &UserProfile) -> Result<()> {
        let email = user.email.to_lowercase();
        let mut d = self.inner.directory.write();
        if d.emails.contains_key(&email) {
            return Err(Error::already_exists("user", "email", email));
        }
        if d.users.contains_key(&user.id) {
            return Err(Error::already_exists("user", "id", user.id));
        }
        d.emails.insert(email, user.id);
        d.users.insert(user.id, user.clone());
        self.record(
            user.created_at,
            [DomainEvent::UserRegistered { user: user.id }],
        );
        Ok(())
    }

    async fn user(&self, id: UserId) -> Result<Option<UserProfile>> {
        Ok(self.inner.directory.read().users.get(&id).cloned())
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<UserProfile>> {
        let d = self.inner.directory.read();
        Ok(d.emails
            .get(&email.trim().to_lowercase())
            .and_then(|id| d.users.get(id))
            .cloned())
    }
}
