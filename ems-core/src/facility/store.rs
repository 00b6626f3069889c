use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{FacilityBooking, Resource, ResourceKind};
use crate::id::{EventId, FacilityBookingId, OrganizationId, PackageId, ResourceId};
use crate::Result;

/// Storage port for facility resources and their bookings.
///
/// # Contract
/// - `book_facilities` stores every booking of the package or none: each must fit
///   its resource for its whole period given the active bookings already stored
///   and the package's other bookings — an exclusive resource overlaps no other
///   active booking, a stocked one never has more units in use at any instant
///   than its stock ([`peak_usage`](super::peak_usage)). The first that does not
///   fit is `SoldOut { quota: "resource <id>", requested, available }`. Back-to-back
///   periods (one ends when the next starts) do not overlap.
/// - `cancel_package` marks every booking of the package cancelled (idempotent),
///   appending `FacilitiesCancelled` if anything changed; its units are free at once.
/// - `book_facilities` appends `FacilitiesBooked`.
/// - `facility_bookings` returns the resource's active bookings overlapping
///   `[from, to)`, ordered by start.
#[async_trait]
pub trait FacilityStore: Send + Sync + 'static {
    /// Stores a new resource.
    async fn insert_resource(&self, resource: &Resource) -> Result<()>;
    /// Reads a resource.
    async fn resource(&self, id: ResourceId) -> Result<Option<Resource>>;
    /// Resources, optionally of one organization and/or kind, by name.
    async fn resources(
        &self,
        organization: Option<OrganizationId>,
        kind: Option<&ResourceKind>,
    ) -> Result<Vec<Resource>>;
    /// Books a package atomically.
    async fn book_facilities(&self, bookings: &[FacilityBooking]) -> Result<()>;
    /// Cancels a package; returns its bookings as they are now.
    async fn cancel_package(
        &self,
        package: PackageId,
        now: DateTime<Utc>,
    ) -> Result<Vec<FacilityBooking>>;
    /// A resource's active bookings overlapping `[from, to)`.
    async fn facility_bookings(
        &self,
        resource: ResourceId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<FacilityBooking>>;
    /// Reads one booking.
    async fn facility_booking(&self, id: FacilityBookingId) -> Result<Option<FacilityBooking>>;
    /// The active bookings made for an event.
    async fn event_facilities(&self, event: EventId) -> Result<Vec<FacilityBooking>>;
}
