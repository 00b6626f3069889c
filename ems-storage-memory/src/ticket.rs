use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ems_core::id::{BookingId, EventId, TicketId};
use ems_core::outbox::DomainEvent;
use ems_core::ticket::*;
use ems_core::Result;

use crate::MemoryStore;

#[async_trait]
impl TicketStore for MemoryStore {
    async fn ticket(&self, id: TicketId) -> Result<Option<Ticket>> {
        Ok(self
            .shard_via(&self.inner.tickets, &id)
            .and_then(|s| s.lock().tickets.get(&id).map(|t| (**t).clone())))
    }

    async fn tickets_for_booking(&self, booking: BookingId) -> Result<Vec<Ticket>> {
        let Some(shard) = self.shard_via(&self.inner.bookings, &booking) else {
            return Ok(Vec::new());
        };
        let s = shard.lock();
        Ok(s.booking_tickets
            .get(&booking)
            .into_iter()
            .flatten()
            .filter_map(|id| s.tickets.get(id).map(|t| (**t).clone()))
            .collect())
    }

    async fn check_in(
        &self,
        ticket: TicketId,
        event: EventId,
        now: DateTime<Utc>,
    ) -> Result<CheckIn> {
        let Some(shard) = self.shard_via(&self.inner.tickets, &ticket) else {
            return Ok(CheckIn::Refused {
                refusal: CheckInRefusal::Unknown,
            });
        };
        let mut s = shard.lock();
        let Some(t) = s.tickets.get_mut(&ticket) else {
            return Ok(CheckIn::Refused {
                refusal: CheckInRefusal::Unknown,
            });
        };
        if t.event_id != event {
            return Ok(CheckIn::Refused {
                refusal: CheckInRefusal::WrongEvent {
                    ticket_event: t.event_id,
                },
            });
        }
        if t.status == TicketStatus::Void {
            return Ok(CheckIn::Refused {
                refusal: CheckInRefusal::Void,
            });
        }
        if let Some(at) = t.checked_in_at {
            return Ok(CheckIn::Refused {
                refusal: CheckInRefusal::AlreadyCheckedIn { at },
            });
        }
        t.checked_in_at = Some(now);
        let admitted = t.clone();
        self.record(
            now,
            [DomainEvent::TicketCheckedIn {
                event_id: event,
                ticket_id: ticket,
            }],
        );
        Ok(CheckIn::Admitted { ticket: *admitted })
    }
}
