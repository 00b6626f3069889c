//! # ems
//!
//! Embeddable event management and ticketing for Rust services: events and their
//! lifecycle, ticket inventory with holds that never oversells, a checkout saga
//! with idempotent steps and compensation, pluggable payment gateways, tickets with
//! signed codes and check-in, and a domain-event log for notifications.
//!
//! This facade re-exports [`ems_core`] and, with the default `memory` feature, the
//! in-memory backend as [`memory`]; with feature `postgres`, the PostgreSQL backend
//! as `postgres`; with feature `mongo`, the MongoDB backend as `mongo`.
//!
//! ```
//! use std::sync::Arc;
//! use chrono::{Duration, Utc};
//! use ems::prelude::*;
//!
//! # futures::executor::block_on(async {
//! let ems = Ems::builder(Arc::new(ems::memory::MemoryStore::new())).build()?;
//! let org = ems.create_organization(&Actor::System, "Riverside Hall").await?;
//! let organizer = Actor::Organizer { user: UserId::new(), organization: org.id };
//! let starts = Utc::now() + Duration::days(30);
//! let event = ems
//!     .create_event(&organizer, NewEvent::builder(org.id, "Jazz Night", starts, starts + Duration::hours(3)).capacity(100).build())
//!     .await?;
//! let tier = ems.add_tier(&organizer, event.id, NewTier::new("Standing", Money::parse("25.00", "EUR")?, 100)).await?;
//! ems.publish_event(&organizer, event.id, event.version).await?;
//!
//! let buyer = Actor::Customer { user: UserId::new() };
//! let order = CheckoutRequest::new(event.id, vec![HoldItem { tier_id: tier.id, quantity: 2 }], "order-1");
//! let checkout = ems.checkout(&buyer, order).await?;
//! assert_eq!(checkout.booking.status, BookingStatus::Confirmed);
//! assert_eq!(checkout.tickets.len(), 2);
//! # Ok::<(), ems::Error>(())
//! # }).unwrap();
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use ems_core::*;

/// The in-memory backend (feature `memory`, on by default).
#[cfg(feature = "memory")]
#[cfg_attr(docsrs, doc(cfg(feature = "memory")))]
pub mod memory {
    pub use ems_storage_memory::MemoryStore;
}

/// The MongoDB backend (feature `mongo`).
#[cfg(feature = "mongo")]
#[cfg_attr(docsrs, doc(cfg(feature = "mongo")))]
pub mod mongo {
    pub use ems_storage_mongo::{Compatibility, MongoStore};
}

/// The PostgreSQL backend (feature `postgres`).
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres {
    pub use ems_storage_postgres::PostgresStore;
}

/// The names most programs need.
pub mod prelude {
    pub use ems_core::booking::{Booking, BookingStatus, CheckoutRequest};
    pub use ems_core::clock::{Clock, ManualClock, SystemClock};
    pub use ems_core::event::{EventFilter, EventStatus, NewEvent};
    pub use ems_core::id::*;
    pub use ems_core::inventory::{HoldItem, HoldOptions, NewTier};
    pub use ems_core::money::{Currency, Money};
    pub use ems_core::page::PageRequest;
    pub use ems_core::ticket::{CheckIn, CheckInRefusal};
    pub use ems_core::{Actor, Ems, Error, Store};
}

/// The README's examples, compiled as doc tests so they stay true (they use
/// both backends, so they run with `--all-features`, as the test command does).
#[cfg(all(doctest, feature = "memory", feature = "postgres"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
