//! Facilities: venues, performers, decorations, catering and custom resources,
//! booked for a date and named slot or a time range in the resource's time zone.
//! Exclusive resources never overlap; stocked ones never exceed their stock at any
//! instant; a package of bookings is made all together or not at all.

mod rules;
mod service;
mod store;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

pub use rules::{local_interval, peak_usage, slot_interval};
pub use service::NewResource;

/// How many days around the wanted date [`Ems::alternatives`](crate::Ems::alternatives) searches.
pub const ALTERNATIVE_SEARCH_DAYS: i64 = 30;
pub use store::FacilityStore;

use crate::id::{EventId, FacilityBookingId, OrganizationId, PackageId, ResourceId};
use crate::money::Money;

/// What a resource is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ResourceKind {
    /// A place.
    Venue,
    /// A band or artist.
    Performer,
    /// Decorations (chairs, lights, flowers …).
    Decoration,
    /// Food and drink.
    Catering,
    /// Anything else, named.
    Custom(String),
}

/// How many bookings a resource takes at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", content = "units", rename_all = "snake_case")]
pub enum Stock {
    /// One booking at a time (a venue, a band).
    Exclusive,
    /// Up to this many units across overlapping bookings (300 chairs).
    Stocked(u32),
}

/// What a resource's price is per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PriceUnit {
    /// Per booking (a slot or a range), whatever its length.
    PerBooking,
    /// Per unit booked (a chair, a snack box).
    PerUnit,
}

/// A named part of a day, in the resource's local time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SlotDef {
    /// Name (unique per resource, compared case-insensitively).
    pub name: String,
    /// Local start.
    pub start: NaiveTime,
    /// Local end (after `start`, same day).
    pub end: NaiveTime,
}

/// Morning 08–12, Afternoon 12–17, Evening 18–23.
pub fn default_slots() -> Vec<SlotDef> {
    let t = |h| NaiveTime::from_hms_opt(h, 0, 0).expect("a valid hour");
    vec![
        SlotDef {
            name: "Morning".into(),
            start: t(8),
            end: t(12),
        },
        SlotDef {
            name: "Afternoon".into(),
            start: t(12),
            end: t(17),
        },
        SlotDef {
            name: "Evening".into(),
            start: t(18),
            end: t(23),
        },
    ]
}

/// Details only venues have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VenueDetails {
    /// People it holds.
    pub capacity: u32,
    /// Street address.
    pub address: String,
    /// Latitude in degrees (−90..=90).
    pub latitude: f64,
    /// Longitude in degrees (−180..=180).
    pub longitude: f64,
}

/// Something organizers book.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Resource {
    /// Its id.
    pub id: ResourceId,
    /// The organization that owns and manages it.
    pub organization: OrganizationId,
    /// What it is.
    pub kind: ResourceKind,
    /// Display name.
    pub name: String,
    /// Exclusive or stocked.
    pub stock: Stock,
    /// Price per booking or per unit.
    pub price: Money,
    /// What the price is per.
    pub price_unit: PriceUnit,
    /// Time zone its slots and ranges are in.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "Europe/Lisbon"))]
    pub time_zone: Tz,
    /// Its named slots.
    pub slots: Vec<SlotDef>,
    /// Venue details, for venues.
    pub venue: Option<VenueDetails>,
    /// Creation instant.
    pub created_at: DateTime<Utc>,
}

impl Resource {
    /// Units available at once.
    pub fn units(&self) -> u32 {
        match self.stock {
            Stock::Exclusive => 1,
            Stock::Stocked(n) => n,
        }
    }

    /// A slot by name (case-insensitive).
    pub fn slot(&self, name: &str) -> Option<&SlotDef> {
        self.slots
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(name.trim()))
    }
}

/// When a resource is wanted, in its local time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum When {
    /// A named slot on a date.
    Slot {
        /// The local date.
        date: NaiveDate,
        /// The slot's name.
        slot: String,
    },
    /// A local time range.
    Range {
        /// Local start.
        start: NaiveDateTime,
        /// Local end.
        end: NaiveDateTime,
    },
}

/// One resource wanted in a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FacilityRequest {
    /// The resource.
    pub resource: ResourceId,
    /// When.
    pub when: When,
    /// Units (1 for exclusive resources).
    pub quantity: u32,
}

/// Whether a facility booking holds its resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum FacilityStatus {
    /// Holds the resource.
    Active,
    /// Released.
    Cancelled,
}

/// A resource booked for a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FacilityBooking {
    /// Its id.
    pub id: FacilityBookingId,
    /// The package it was made in.
    pub package: PackageId,
    /// The resource.
    pub resource: ResourceId,
    /// The organization that booked it.
    pub organization: OrganizationId,
    /// The event it serves, if any.
    pub event: Option<EventId>,
    /// UTC start (inclusive).
    pub start: DateTime<Utc>,
    /// UTC end (exclusive).
    pub end: DateTime<Utc>,
    /// The slot, when booked by slot.
    pub slot: Option<String>,
    /// Units.
    pub quantity: u32,
    /// Price of the booking.
    pub price: Money,
    /// Active or cancelled.
    pub status: FacilityStatus,
    /// Creation instant.
    pub created_at: DateTime<Utc>,
}

/// Other times and resources to offer when the wanted one is taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Alternatives {
    /// The same resource at the nearest other dates (same slot or same local
    /// hours), nearest first, earlier before later at equal distance.
    pub same_resource: Vec<(NaiveDate, DateTime<Utc>, DateTime<Utc>)>,
    /// Other resources of the same kind free at the wanted time, best match
    /// first: the closest in price, then by name.
    pub other_resources: Vec<Resource>,
}

/// How much of a resource a slot has left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SlotAvailability {
    /// The slot.
    pub slot: String,
    /// UTC start.
    pub start: DateTime<Utc>,
    /// UTC end.
    pub end: DateTime<Utc>,
    /// Units free for the whole slot (0 or 1 for exclusive resources).
    pub free: u32,
}
