-- The documents of holds, bookings and payments may be kept as `json` (column
-- `body`) instead of `jsonb` (column `doc`).
--
-- Only this store reads those documents, and only whole. As `jsonb` the server
-- parses each one into its binary form on the way in: on a hot on-sale,
-- binding a batch's documents was about a quarter of the batch's time at the
-- server. As `json` it only checks that the text is JSON and keeps it as sent.
--
-- The new column sits beside the old one instead of retyping it: a process of
-- an earlier version sharing the database keeps its prepared statements (a
-- column whose type changes under a prepared read fails it), and keeps reading
-- `doc`, which this version goes on writing until told otherwise. Each row has
-- its document in exactly one of the two columns; this version reads either.
-- `ems_settings.documents = 'json'` switches writers of this version to
-- `body`: set by `migrate` on a new database, and by
-- `PostgresStore::write_documents_as_json` once every process sharing the
-- database runs this version or later.

ALTER TABLE ems_holds
    ADD COLUMN body json,
    ALTER COLUMN doc DROP NOT NULL,
    ADD CONSTRAINT ems_holds_one_document CHECK (num_nonnulls(doc, body) = 1) NOT VALID;
ALTER TABLE ems_bookings
    ADD COLUMN body json,
    ALTER COLUMN doc DROP NOT NULL,
    ADD CONSTRAINT ems_bookings_one_document CHECK (num_nonnulls(doc, body) = 1) NOT VALID;
ALTER TABLE ems_payments
    ADD COLUMN body json,
    ALTER COLUMN doc DROP NOT NULL,
    ADD CONSTRAINT ems_payments_one_document CHECK (num_nonnulls(doc, body) = 1) NOT VALID;

-- Settings every process of the database shares.
CREATE TABLE ems_settings (
    name   text PRIMARY KEY,
    value  text NOT NULL
);
