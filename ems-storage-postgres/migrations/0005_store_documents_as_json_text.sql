-- The documents of holds, bookings, payments and domain events are read only
-- by this store, which parses them itself; nothing queries inside them but
-- the hold's `lines`, which `json` serves as well. As `jsonb`, the server
-- parsed each one into its binary form on the way in and printed it back on
-- the way out: on a hot on-sale, binding a batch's documents was a fifth of
-- the batch's time at the server. As `json` the server only checks that the
-- text is JSON and keeps it as sent.
--
-- Events, tiers, shared quotas, coupons, tickets, refunds and the other
-- documents stay `jsonb`.

ALTER TABLE ems_holds ALTER COLUMN doc TYPE json USING doc::json;
ALTER TABLE ems_bookings ALTER COLUMN doc TYPE json USING doc::json;
ALTER TABLE ems_payments ALTER COLUMN doc TYPE json USING doc::json;
ALTER TABLE ems_outbox ALTER COLUMN doc TYPE json USING doc::json;
