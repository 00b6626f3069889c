-- Bookings, payments and tickets name their event through the chain they hang
-- from (hold -> booking -> payment / ticket) instead of each referencing
-- ems_events directly.
--
-- A foreign key check takes FOR KEY SHARE on the referenced row. On a hot
-- event every booking, payment and ticket insert did so on the event's row,
-- which the hold path keeps locked FOR UPDATE to change its counters: the
-- checkout steps after the hold queued behind every hold batch (and the holds
-- behind them). The composite keys below keep the same guarantee (a booking
-- is for its hold's event, a payment or ticket for its booking's event, and
-- through the hold the event exists) while touching only rows of that one
-- checkout.

ALTER TABLE ems_holds ADD CONSTRAINT ems_holds_id_event_key UNIQUE (id, event_id);
ALTER TABLE ems_bookings ADD CONSTRAINT ems_bookings_id_event_key UNIQUE (id, event_id);

ALTER TABLE ems_bookings
    ADD CONSTRAINT ems_bookings_hold_event_fkey
    FOREIGN KEY (hold_id, event_id) REFERENCES ems_holds (id, event_id);
ALTER TABLE ems_payments
    ADD CONSTRAINT ems_payments_booking_event_fkey
    FOREIGN KEY (booking_id, event_id) REFERENCES ems_bookings (id, event_id);
ALTER TABLE ems_tickets
    ADD CONSTRAINT ems_tickets_booking_event_fkey
    FOREIGN KEY (booking_id, event_id) REFERENCES ems_bookings (id, event_id);

ALTER TABLE ems_bookings DROP CONSTRAINT ems_bookings_event_id_fkey;
ALTER TABLE ems_payments DROP CONSTRAINT ems_payments_event_id_fkey;
ALTER TABLE ems_tickets DROP CONSTRAINT ems_tickets_event_id_fkey;
-- The composite keys subsume the single-column ones to the same rows.
ALTER TABLE ems_bookings DROP CONSTRAINT ems_bookings_hold_id_fkey;
ALTER TABLE ems_payments DROP CONSTRAINT ems_payments_booking_id_fkey;
ALTER TABLE ems_tickets DROP CONSTRAINT ems_tickets_booking_id_fkey;
