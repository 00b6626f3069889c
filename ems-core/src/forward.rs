//! Every port forwarded through `Arc<T>` and `Box<T>` (including `dyn` stores), so
//! a shared or boxed backend is a backend.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::booking::{
    Booking, BookingReason, BookingStore, CancelBooking, CheckoutStore, ConfirmBooking,
    ConfirmOutcome, HeldAndOpened, HoldAndOpen, OpenCheckout, Opened, SettlePaid, Settled,
};
use crate::directory::{DirectoryStore, Organization, UserProfile};
use crate::event::{Event, EventCancellation, EventQuery, EventStore};
use crate::facility::{FacilityBooking, FacilityStore, Resource, ResourceKind};
use crate::id::*;
use crate::inventory::{
    EventAvailability, Hold, HoldOwner, HoldRelease, HoldRequest, InventoryStore, SharedQuota,
    TicketTier,
};
use crate::outbox::{DomainEvent, OutboxStore, RecordedEvent};
use crate::payment::{Payment, PaymentStore, Refund};
use crate::pricing::{Coupon, CouponStore};
use crate::ticket::{CheckIn, Ticket, TicketStore};
use crate::Result;

macro_rules! forward_ports {
    ($wrapper:ident) => {
        #[async_trait]
        impl<T: CheckoutStore + ?Sized> CheckoutStore for $wrapper<T> {
            async fn open_checkouts(&self, batch: &[OpenCheckout]) -> Vec<Result<Opened>> {
                (**self).open_checkouts(batch).await
            }
            async fn settle_paid(&self, batch: &[SettlePaid]) -> Vec<Result<Settled>> {
                (**self).settle_paid(batch).await
            }
            async fn hold_and_open(&self, batch: &[HoldAndOpen]) -> Vec<Result<HeldAndOpened>> {
                (**self).hold_and_open(batch).await
            }
            fn opens_with_holds(&self) -> bool {
                (**self).opens_with_holds()
            }
        }

        #[async_trait]
        impl<T: DirectoryStore + ?Sized> DirectoryStore for $wrapper<T> {
            async fn insert_organization(&self, org: &Organization) -> Result<()> {
                (**self).insert_organization(org).await
            }
            async fn organization(&self, id: OrganizationId) -> Result<Option<Organization>> {
                (**self).organization(id).await
            }
            async fn insert_user(&self, user: &UserProfile) -> Result<()> {
                (**self).insert_user(user).await
            }
            async fn user(&self, id: UserId) -> Result<Option<UserProfile>> {
                (**self).user(id).await
            }
            async fn user_by_email(&self, email: &str) -> Result<Option<UserProfile>> {
                (**self).user_by_email(email).await
            }
        }

        #[async_trait]
        impl<T: EventStore + ?Sized> EventStore for $wrapper<T> {
            async fn insert_event(&self, event: &Event) -> Result<()> {
                (**self).insert_event(event).await
            }
            async fn event(&self, id: EventId) -> Result<Option<Event>> {
                (**self).event(id).await
            }
            async fn update_event(&self, event: &Event, change: DomainEvent) -> Result<()> {
                (**self).update_event(event, change).await
            }
            async fn cancel_event(
                &self,
                id: EventId,
                expected_version: u64,
                now: DateTime<Utc>,
            ) -> Result<EventCancellation> {
                (**self).cancel_event(id, expected_version, now).await
            }
            async fn list_events(&self, query: &EventQuery) -> Result<Vec<Event>> {
                (**self).list_events(query).await
            }
        }

        #[async_trait]
        impl<T: InventoryStore + ?Sized> InventoryStore for $wrapper<T> {
            async fn insert_tier(&self, tier: &TicketTier) -> Result<()> {
                (**self).insert_tier(tier).await
            }
            async fn update_tier(&self, tier: &TicketTier) -> Result<()> {
                (**self).update_tier(tier).await
            }
            async fn tiers(&self, event: EventId) -> Result<Vec<TicketTier>> {
                (**self).tiers(event).await
            }
            async fn insert_shared_quota(&self, quota: &SharedQuota) -> Result<()> {
                (**self).insert_shared_quota(quota).await
            }
            async fn shared_quotas(&self, event: EventId) -> Result<Vec<SharedQuota>> {
                (**self).shared_quotas(event).await
            }
            async fn availability(
                &self,
                event: EventId,
                now: DateTime<Utc>,
            ) -> Result<EventAvailability> {
                (**self).availability(event, now).await
            }
            async fn try_hold(&self, request: &HoldRequest) -> Result<Hold> {
                (**self).try_hold(request).await
            }
            async fn try_hold_to_book(&self, request: &HoldRequest) -> Result<Hold> {
                (**self).try_hold_to_book(request).await
            }
            async fn try_hold_batch(&self, requests: &[HoldRequest]) -> Vec<Result<Hold>> {
                (**self).try_hold_batch(requests).await
            }
            fn prefers_hold_batching(&self) -> bool {
                (**self).prefers_hold_batching()
            }
            async fn hold_owner(&self, id: HoldId) -> Result<Option<HoldOwner>> {
                (**self).hold_owner(id).await
            }
            async fn hold(&self, id: HoldId) -> Result<Option<Hold>> {
                (**self).hold(id).await
            }
            async fn release_hold(&self, id: HoldId, now: DateTime<Utc>) -> Result<Hold> {
                (**self).release_hold(id, now).await
            }
            async fn release_customer_hold(
                &self,
                id: HoldId,
                customer: UserId,
                now: DateTime<Utc>,
            ) -> Result<Hold> {
                (**self).release_customer_hold(id, customer, now).await
            }
            async fn release_hold_batch(&self, requests: &[HoldRelease]) -> Vec<Result<Hold>> {
                (**self).release_hold_batch(requests).await
            }
            async fn sweep_expired(&self, now: DateTime<Utc>, limit: u32) -> Result<u32> {
                (**self).sweep_expired(now, limit).await
            }
            async fn purge_ended_holds(
                &self,
                created_before: DateTime<Utc>,
                limit: u32,
            ) -> Result<u32> {
                (**self).purge_ended_holds(created_before, limit).await
            }
        }

        #[async_trait]
        impl<T: BookingStore + ?Sized> BookingStore for $wrapper<T> {
            async fn create_booking(&self, booking: &Booking) -> Result<Booking> {
                (**self).create_booking(booking).await
            }
            async fn booking(&self, id: BookingId) -> Result<Option<Booking>> {
                (**self).booking(id).await
            }
            async fn booking_by_key(&self, customer: UserId, key: &str) -> Result<Option<Booking>> {
                (**self).booking_by_key(customer, key).await
            }
            async fn bookings_for_customer(
                &self,
                customer: UserId,
                before: Option<BookingId>,
                limit: u32,
            ) -> Result<Vec<Booking>> {
                (**self)
                    .bookings_for_customer(customer, before, limit)
                    .await
            }
            async fn bookings_for_event(
                &self,
                event: EventId,
                before: Option<BookingId>,
                limit: u32,
            ) -> Result<Vec<Booking>> {
                (**self).bookings_for_event(event, before, limit).await
            }
            async fn confirm_booking(&self, request: &ConfirmBooking) -> Result<ConfirmOutcome> {
                (**self).confirm_booking(request).await
            }
            async fn fail_booking(
                &self,
                id: BookingId,
                reason: BookingReason,
                now: DateTime<Utc>,
            ) -> Result<Booking> {
                (**self).fail_booking(id, reason, now).await
            }
            async fn cancel_booking(&self, request: &CancelBooking) -> Result<Booking> {
                (**self).cancel_booking(request).await
            }
        }

        #[async_trait]
        impl<T: PaymentStore + ?Sized> PaymentStore for $wrapper<T> {
            async fn insert_payment(&self, payment: &Payment) -> Result<Payment> {
                (**self).insert_payment(payment).await
            }
            async fn payment(&self, id: PaymentId) -> Result<Option<Payment>> {
                (**self).payment(id).await
            }
            async fn payment_by_reference(
                &self,
                gateway: &str,
                reference: &str,
            ) -> Result<Option<Payment>> {
                (**self).payment_by_reference(gateway, reference).await
            }
            async fn payments_for_booking(&self, booking: BookingId) -> Result<Vec<Payment>> {
                (**self).payments_for_booking(booking).await
            }
            async fn update_payment(&self, payment: &Payment) -> Result<()> {
                (**self).update_payment(payment).await
            }
            async fn insert_refund(&self, refund: &Refund) -> Result<()> {
                (**self).insert_refund(refund).await
            }
            async fn refund(&self, id: RefundId) -> Result<Option<Refund>> {
                (**self).refund(id).await
            }
            async fn update_refund(&self, refund: &Refund) -> Result<()> {
                (**self).update_refund(refund).await
            }
            async fn refunds_for_booking(&self, booking: BookingId) -> Result<Vec<Refund>> {
                (**self).refunds_for_booking(booking).await
            }
        }

        #[async_trait]
        impl<T: TicketStore + ?Sized> TicketStore for $wrapper<T> {
            async fn ticket(&self, id: TicketId) -> Result<Option<Ticket>> {
                (**self).ticket(id).await
            }
            async fn tickets_for_booking(&self, booking: BookingId) -> Result<Vec<Ticket>> {
                (**self).tickets_for_booking(booking).await
            }
            async fn check_in(
                &self,
                ticket: TicketId,
                event: EventId,
                now: DateTime<Utc>,
            ) -> Result<CheckIn> {
                (**self).check_in(ticket, event, now).await
            }
        }

        #[async_trait]
        impl<T: CouponStore + ?Sized> CouponStore for $wrapper<T> {
            async fn insert_coupon(&self, coupon: &Coupon) -> Result<()> {
                (**self).insert_coupon(coupon).await
            }
            async fn coupon(&self, id: CouponId) -> Result<Option<Coupon>> {
                (**self).coupon(id).await
            }
            async fn coupon_by_code(
                &self,
                organization: OrganizationId,
                code: &str,
            ) -> Result<Option<Coupon>> {
                (**self).coupon_by_code(organization, code).await
            }
            async fn coupon_uses(&self, id: CouponId) -> Result<u32> {
                (**self).coupon_uses(id).await
            }
        }

        #[async_trait]
        impl<T: FacilityStore + ?Sized> FacilityStore for $wrapper<T> {
            async fn insert_resource(&self, resource: &Resource) -> Result<()> {
                (**self).insert_resource(resource).await
            }
            async fn resource(&self, id: ResourceId) -> Result<Option<Resource>> {
                (**self).resource(id).await
            }
            async fn resources(
                &self,
                organization: Option<OrganizationId>,
                kind: Option<&ResourceKind>,
            ) -> Result<Vec<Resource>> {
                (**self).resources(organization, kind).await
            }
            async fn book_facilities(&self, bookings: &[FacilityBooking]) -> Result<()> {
                (**self).book_facilities(bookings).await
            }
            async fn cancel_package(
                &self,
                package: PackageId,
                now: DateTime<Utc>,
            ) -> Result<Vec<FacilityBooking>> {
                (**self).cancel_package(package, now).await
            }
            async fn facility_bookings(
                &self,
                resource: ResourceId,
                from: DateTime<Utc>,
                to: DateTime<Utc>,
            ) -> Result<Vec<FacilityBooking>> {
                (**self).facility_bookings(resource, from, to).await
            }
            async fn facility_booking(
                &self,
                id: FacilityBookingId,
            ) -> Result<Option<FacilityBooking>> {
                (**self).facility_booking(id).await
            }
            async fn event_facilities(&self, event: EventId) -> Result<Vec<FacilityBooking>> {
                (**self).event_facilities(event).await
            }
        }

        #[async_trait]
        impl<T: OutboxStore + ?Sized> OutboxStore for $wrapper<T> {
            async fn read_events(
                &self,
                after: Option<u64>,
                limit: u32,
            ) -> Result<Vec<RecordedEvent>> {
                (**self).read_events(after, limit).await
            }
            async fn prune_events(&self, up_to: u64) -> Result<u64> {
                (**self).prune_events(up_to).await
            }
        }
    };
}

forward_ports!(Arc);
forward_ports!(Box);

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_store<S: crate::Store>() {}

    #[test]
    fn shared_and_boxed_stores_are_stores() {
        assert_store::<Arc<dyn crate::Store>>();
        assert_store::<Box<dyn crate::Store>>();
        assert_store::<Arc<Box<dyn crate::Store>>>();
    }
}
