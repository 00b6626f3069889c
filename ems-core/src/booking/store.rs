use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Booking, BookingReason};
use crate::id::{BookingId, EventId, UserId};
use crate::payment::Refund;
use crate::ticket::Ticket;
use crate::Result;

/// Input of [`BookingStore::confirm_booking`].
#[derive(Debug, Clone, PartialEq)]
pub struct ConfirmBooking {
    /// The booking to confirm.
    pub booking_id: BookingId,
    /// Its tickets, one per unit, to store if (and only if) it gets confirmed now.
    pub tickets: Vec<Ticket>,
    /// The operation's "now".
    pub now: DateTime<Utc>,
}

impl ConfirmBooking {
    /// Confirms `booking` with one fresh, valid ticket per unit.
    pub fn issuing(booking: &super::Booking, now: DateTime<Utc>) -> Self {
        let mut ids = crate::id::Minter::start();
        let tickets = booking
            .lines
            .iter()
            .flat_map(|l| std::iter::repeat_n(l.tier_id, l.quantity as usize))
            .map(|tier_id| Ticket {
                id: crate::id::TicketId(ids.mint()),
                booking_id: booking.id,
                event_id: booking.event_id,
                tier_id,
                holder: booking.customer,
                status: crate::ticket::TicketStatus::Valid,
                issued_at: now,
                checked_in_at: None,
            })
            .collect();
        Self {
            booking_id: booking.id,
            tickets,
            now,
        }
    }
}

/// What [`BookingStore::confirm_booking`] did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConfirmOutcome {
    /// Confirmed now (on its hold, or on units taken again after the hold lapsed).
    Confirmed(Booking),
    /// It was already confirmed; nothing changed.
    AlreadyConfirmed(Booking),
    /// It cannot be delivered (units gone, event cancelled); the booking is now
    /// `Unfulfilled` and the payment must be refunded.
    Unfulfilled(Booking),
}

impl ConfirmOutcome {
    /// The booking in its new state.
    pub fn booking(&self) -> &Booking {
        match self {
            ConfirmOutcome::Confirmed(b)
            | ConfirmOutcome::AlreadyConfirmed(b)
            | ConfirmOutcome::Unfulfilled(b) => b,
        }
    }
}

/// Input of [`BookingStore::cancel_booking`].
#[derive(Debug, Clone, PartialEq)]
pub struct CancelBooking {
    /// The confirmed booking.
    pub booking_id: BookingId,
    /// Why.
    pub reason: BookingReason,
    /// The refund to record with it, if any money goes back.
    pub refund: Option<Refund>,
    /// The operation's "now".
    pub now: DateTime<Utc>,
}

/// Storage port for bookings; its operations are the checkout saga's atomic steps.
///
/// # Contract
/// - `create_booking`: if the customer already has a booking with the same
///   idempotency key, that booking is returned and nothing is stored. Otherwise the
///   hold must be active at `created_at`, belong to the customer and carry no
///   booking (`InvalidState` otherwise); the booking is stored, the hold points to
///   it, and `BookingCreated` is appended — all in one atomic step.
/// - `confirm_booking`: confirmed → `AlreadyConfirmed`; cancelled/unfulfilled →
///   `Unfulfilled` unchanged. Otherwise, with its hold still active and unexpired,
///   the hold becomes confirmed (no quota changes), the booking confirmed, the
///   tickets stored. With the hold lapsed or released, the units are taken again
///   on every quota if all fit and the event is not cancelled or completed
///   (booking reason `Reacquired`), else the booking becomes `Unfulfilled`
///   (`SoldOutAfterExpiry` or `EventCancelled`) and its units are not taken.
///   Appends `BookingConfirmed` or `BookingUnfulfilled`.
/// - `fail_booking`: pending → failed with `reason`, its active hold released;
///   failed/expired → unchanged; any other state → `InvalidState`.
/// - `cancel_booking`: confirmed → cancelled, tickets void, units returned to every
///   quota, `refund` recorded (same rule as `PaymentStore::insert_refund`); a
///   booking with a checked-in ticket is `InvalidState`; an already cancelled
///   booking is returned unchanged and no refund is recorded.
/// - listings are newest first, strictly before the `before` id.
#[async_trait]
pub trait BookingStore: Send + Sync + 'static {
    /// Opens a pending booking on a hold (idempotent on the customer's key).
    async fn create_booking(&self, booking: &Booking) -> Result<Booking>;
    /// Reads a booking.
    async fn booking(&self, id: BookingId) -> Result<Option<Booking>>;
    /// Finds a customer's booking by idempotency key.
    async fn booking_by_key(&self, customer: UserId, key: &str) -> Result<Option<Booking>>;
    /// A customer's bookings, newest first.
    async fn bookings_for_customer(
        &self,
        customer: UserId,
        before: Option<BookingId>,
        limit: u32,
    ) -> Result<Vec<Booking>>;
    /// An event's bookings, newest first.
    async fn bookings_for_event(
        &self,
        event: EventId,
        before: Option<BookingId>,
        limit: u32,
    ) -> Result<Vec<Booking>>;
    /// Confirms a paid booking and stores its tickets (see the contract).
    async fn confirm_booking(&self, request: &ConfirmBooking) -> Result<ConfirmOutcome>;
    /// Fails a pending booking and releases its hold.
    async fn fail_booking(
        &self,
        id: BookingId,
        reason: BookingReason,
        now: DateTime<Utc>,
    ) -> Result<Booking>;
    /// Cancels a confirmed booking, voiding its tickets and returning its units.
    async fn cancel_booking(&self, request: &CancelBooking) -> Result<Booking>;
}

/// Checks that `hold`, as stored, can take `booking` (the
/// [`BookingStore::create_booking`] contract): same event and customer, active
/// and unexpired at the booking's creation, not booked yet, and the same lines
/// and total. Every store calls this (or [`check_bookable_terms`]) on the
/// hold it read (and locked).
pub fn check_bookable(
    hold: &crate::inventory::Hold,
    booking: &super::Booking,
) -> crate::Result<()> {
    check_bookable_terms(hold.terms(), booking)
}

/// [`check_bookable`] on what it reads of the hold, for a store that keeps
/// holds in a shape of its own.
pub fn check_bookable_terms(
    hold: crate::inventory::HoldTerms<'_>,
    booking: &super::Booking,
) -> crate::Result<()> {
    if hold.event_id != booking.event_id {
        return Err(crate::Error::invalid(
            "hold_id",
            "the hold is for another event",
        ));
    }
    if hold.customer != booking.customer {
        return Err(crate::Error::forbidden(
            "book",
            "the hold belongs to another customer",
        ));
    }
    let status = hold.status_at(booking.created_at);
    if status != crate::inventory::HoldStatus::Active || hold.booking_id.is_some() {
        let state = if hold.booking_id.is_some() {
            "already booked".to_owned()
        } else {
            format!("{status:?}")
        };
        return Err(crate::Error::invalid_state("hold", hold.id, state, "book"));
    }
    if hold.lines != booking.lines || hold.total != booking.total {
        return Err(crate::Error::invalid(
            "lines",
            "a booking must carry its hold's lines and total",
        ));
    }
    Ok(())
}

/// Checks what [`BookingStore::cancel_booking`] may do beyond the booking's state:
/// no ticket of it is checked in, and the refund (if any) is for this booking.
pub fn check_cancel(request: &CancelBooking, any_checked_in: bool) -> Result<()> {
    if any_checked_in {
        return Err(crate::Error::invalid_state(
            "booking",
            request.booking_id,
            "a ticket is checked in",
            "cancel",
        ));
    }
    if let Some(r) = &request.refund {
        if r.booking_id != request.booking_id {
            return Err(crate::Error::invalid(
                "refund.booking_id",
                "refund names another booking",
            ));
        }
    }
    Ok(())
}
