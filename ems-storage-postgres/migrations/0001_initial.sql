-- ems schema, version 1.
--
-- Each table keeps what SQL must see as typed columns (ids as uuid, money as
-- numeric with its ISO currency, instants as timestamptz, states as checked text,
-- counters as bigint under CHECK constraints) and the record's immutable body as
-- `doc` (its serde JSON). Columns that change after insert are the truth for
-- their fields; readers overlay them on `doc`. Later migrations only add.

CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE ems_organizations (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL,
    doc         jsonb NOT NULL
);

CREATE TABLE ems_users (
    id            uuid PRIMARY KEY,
    email         text NOT NULL CHECK (email = lower(email)),
    role          text NOT NULL CHECK (role IN ('customer', 'organizer', 'admin')),
    organization  uuid,
    created_at    timestamptz NOT NULL,
    doc           jsonb NOT NULL,
    CONSTRAINT ems_users_email_key UNIQUE (email)
);

CREATE TABLE ems_events (
    id            uuid PRIMARY KEY,
    organization  uuid NOT NULL,
    status        text NOT NULL
                  CHECK (status IN ('draft', 'published', 'rescheduled', 'completed', 'cancelled')),
    title         text NOT NULL,
    description   text NOT NULL,
    category      text NOT NULL,
    city          text NOT NULL,
    venue         text NOT NULL,
    starts_at     timestamptz NOT NULL,
    ends_at       timestamptz NOT NULL,
    capacity      bigint NOT NULL CHECK (capacity >= 0),
    -- Units held or sold on the event's own quota.
    taken         bigint NOT NULL DEFAULT 0,
    version       bigint NOT NULL CHECK (version >= 1),
    doc           jsonb NOT NULL,
    CONSTRAINT ems_events_taken_check CHECK (taken >= 0 AND taken <= capacity),
    CONSTRAINT ems_events_period_check CHECK (ends_at > starts_at)
);
-- Keyset order of every listing, alone and within an organization.
CREATE INDEX ems_events_start_idx ON ems_events (starts_at, id);
CREATE INDEX ems_events_org_start_idx ON ems_events (organization, starts_at, id);
-- Selectivity of the case-insensitive filters, so the planner walks the keyset
-- index instead of sorting a scan when they narrow the listing.
CREATE STATISTICS ems_events_category_stats ON (lower(btrim(category))) FROM ems_events;
CREATE STATISTICS ems_events_city_stats ON (lower(btrim(city))) FROM ems_events;

CREATE TABLE ems_shared_quotas (
    id        uuid PRIMARY KEY,
    event_id  uuid NOT NULL REFERENCES ems_events (id),
    seq       bigserial,
    capacity  bigint NOT NULL CHECK (capacity >= 0),
    taken     bigint NOT NULL DEFAULT 0,
    doc       jsonb NOT NULL,
    CONSTRAINT ems_shared_quotas_taken_check CHECK (taken >= 0 AND taken <= capacity)
);
CREATE INDEX ems_shared_quotas_event_idx ON ems_shared_quotas (event_id, seq);

CREATE TABLE ems_tiers (
    id        uuid PRIMARY KEY,
    event_id  uuid NOT NULL REFERENCES ems_events (id),
    seq       bigserial,
    name      text NOT NULL,
    capacity  bigint NOT NULL CHECK (capacity >= 0),
    taken     bigint NOT NULL DEFAULT 0,
    version   bigint NOT NULL,
    doc       jsonb NOT NULL,
    CONSTRAINT ems_tiers_taken_check CHECK (taken >= 0 AND taken <= capacity)
);
CREATE INDEX ems_tiers_event_idx ON ems_tiers (event_id, seq);
CREATE UNIQUE INDEX ems_tiers_name_key ON ems_tiers (event_id, lower(name));

-- Units held per tier and instant, for velocity surge rules (kept as long as the
-- tier's longest velocity window).
CREATE TABLE ems_tier_sales (
    tier_id  uuid NOT NULL REFERENCES ems_tiers (id),
    at       timestamptz NOT NULL,
    units    bigint NOT NULL CHECK (units > 0)
);
CREATE INDEX ems_tier_sales_idx ON ems_tier_sales (tier_id, at);

CREATE TABLE ems_coupons (
    id            uuid PRIMARY KEY,
    organization  uuid NOT NULL,
    code_key      text NOT NULL,
    uses          bigint NOT NULL DEFAULT 0 CHECK (uses >= 0),
    doc           jsonb NOT NULL,
    CONSTRAINT ems_coupons_code_key UNIQUE (organization, code_key)
);

CREATE TABLE ems_coupon_customers (
    coupon_id  uuid NOT NULL REFERENCES ems_coupons (id),
    customer   uuid NOT NULL,
    uses       bigint NOT NULL CHECK (uses >= 0),
    PRIMARY KEY (coupon_id, customer)
);

CREATE TABLE ems_holds (
    id          uuid PRIMARY KEY,
    event_id    uuid NOT NULL REFERENCES ems_events (id),
    customer    uuid NOT NULL,
    status      text NOT NULL CHECK (status IN ('active', 'confirmed', 'released', 'expired')),
    booking_id  uuid,
    coupon_id   uuid REFERENCES ems_coupons (id),
    quantity    bigint NOT NULL CHECK (quantity > 0),
    total       numeric NOT NULL CHECK (total >= 0),
    currency    char(3) NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    doc         jsonb NOT NULL
);
CREATE INDEX ems_holds_due_idx ON ems_holds (expires_at) WHERE status = 'active';
CREATE INDEX ems_holds_event_due_idx ON ems_holds (event_id, expires_at) WHERE status = 'active';
CREATE INDEX ems_holds_ended_idx ON ems_holds (created_at)
    WHERE status IN ('released', 'expired') AND booking_id IS NULL;

CREATE TABLE ems_bookings (
    id               uuid PRIMARY KEY,
    event_id         uuid NOT NULL REFERENCES ems_events (id),
    customer         uuid NOT NULL,
    hold_id          uuid NOT NULL REFERENCES ems_holds (id),
    idempotency_key  text NOT NULL,
    status           text NOT NULL CHECK (status IN
                     ('pending', 'confirmed', 'failed', 'expired', 'cancelled', 'unfulfilled')),
    reason           jsonb,
    total            numeric NOT NULL CHECK (total >= 0),
    currency         char(3) NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    version          bigint NOT NULL,
    doc              jsonb NOT NULL,
    CONSTRAINT ems_bookings_idempotency_key UNIQUE (customer, idempotency_key),
    CONSTRAINT ems_bookings_hold_key UNIQUE (hold_id)
);
CREATE INDEX ems_bookings_customer_idx ON ems_bookings (customer, id DESC);
CREATE INDEX ems_bookings_event_idx ON ems_bookings (event_id, id DESC);

ALTER TABLE ems_holds ADD CONSTRAINT ems_holds_booking_fkey
    FOREIGN KEY (booking_id) REFERENCES ems_bookings (id) DEFERRABLE INITIALLY DEFERRED;

CREATE TABLE ems_payments (
    id               uuid PRIMARY KEY,
    booking_id       uuid NOT NULL REFERENCES ems_bookings (id),
    event_id         uuid NOT NULL REFERENCES ems_events (id),
    seq              bigserial,
    gateway          text NOT NULL,
    reference        text,
    amount           numeric NOT NULL CHECK (amount >= 0),
    refunded         numeric NOT NULL CHECK (refunded >= 0),
    currency         char(3) NOT NULL,
    status           text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'voided')),
    idempotency_key  text NOT NULL,
    version          bigint NOT NULL,
    doc              jsonb NOT NULL,
    CONSTRAINT ems_payments_idempotency_key UNIQUE (idempotency_key),
    CONSTRAINT ems_payments_refunds_within_amount CHECK (refunded <= amount)
);
CREATE INDEX ems_payments_booking_idx ON ems_payments (booking_id, seq);
CREATE INDEX ems_payments_reference_idx ON ems_payments (gateway, reference) WHERE reference IS NOT NULL;

CREATE TABLE ems_refunds (
    id          uuid PRIMARY KEY,
    payment_id  uuid NOT NULL REFERENCES ems_payments (id),
    booking_id  uuid NOT NULL REFERENCES ems_bookings (id),
    seq         bigserial,
    amount      numeric NOT NULL CHECK (amount > 0),
    currency    char(3) NOT NULL,
    status      text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    version     bigint NOT NULL,
    doc         jsonb NOT NULL
);
CREATE INDEX ems_refunds_booking_idx ON ems_refunds (booking_id, seq);
CREATE INDEX ems_refunds_payment_idx ON ems_refunds (payment_id);

CREATE TABLE ems_tickets (
    id             uuid PRIMARY KEY,
    booking_id     uuid NOT NULL REFERENCES ems_bookings (id),
    event_id       uuid NOT NULL REFERENCES ems_events (id),
    seq            bigserial,
    status         text NOT NULL CHECK (status IN ('valid', 'void')),
    checked_in_at  timestamptz,
    doc            jsonb NOT NULL
);
CREATE INDEX ems_tickets_booking_idx ON ems_tickets (booking_id, seq);

CREATE TABLE ems_resources (
    id            uuid PRIMARY KEY,
    organization  uuid NOT NULL,
    kind          jsonb NOT NULL,
    name          text NOT NULL,
    units         bigint NOT NULL CHECK (units > 0),
    doc           jsonb NOT NULL
);
CREATE INDEX ems_resources_org_idx ON ems_resources (organization, name);

CREATE TABLE ems_facility_bookings (
    id            uuid PRIMARY KEY,
    package       uuid NOT NULL,
    resource_id   uuid NOT NULL REFERENCES ems_resources (id),
    event_id      uuid,
    period        tstzrange NOT NULL CHECK (NOT isempty(period)),
    quantity      bigint NOT NULL CHECK (quantity > 0),
    exclusive     boolean NOT NULL,
    status        text NOT NULL CHECK (status IN ('active', 'cancelled')),
    price         numeric NOT NULL CHECK (price >= 0),
    currency      char(3) NOT NULL,
    seq           bigserial,
    doc           jsonb NOT NULL,
    -- Second line of defence: an exclusive resource is never booked twice at once.
    CONSTRAINT ems_facility_exclusive_overlap EXCLUDE USING gist
        (resource_id WITH =, period WITH &&) WHERE (status = 'active' AND exclusive)
);
CREATE INDEX ems_facility_bookings_resource_idx ON ems_facility_bookings USING gist (resource_id, period)
    WHERE status = 'active';
CREATE INDEX ems_facility_bookings_package_idx ON ems_facility_bookings (package, seq);
CREATE INDEX ems_facility_bookings_event_idx ON ems_facility_bookings (event_id) WHERE event_id IS NOT NULL;

-- Domain events. Writers append rows tagged with their transaction id; readers
-- number rows densely (`seq`) only once every older transaction has finished, in
-- (transaction, insertion) order, so a cursor never skips an event that commits late.
CREATE TABLE ems_outbox (
    id           bigserial PRIMARY KEY,
    txid         xid8 NOT NULL DEFAULT pg_current_xact_id(),
    seq          bigint UNIQUE,
    occurred_at  timestamptz NOT NULL,
    doc          jsonb NOT NULL
);
CREATE INDEX ems_outbox_unnumbered_idx ON ems_outbox (txid, id) WHERE seq IS NULL;

CREATE TABLE ems_outbox_state (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_seq   bigint NOT NULL
);
INSERT INTO ems_outbox_state (last_seq) VALUES (0);
