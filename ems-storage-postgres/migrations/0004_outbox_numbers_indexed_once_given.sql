-- Domain events are inserted unnumbered and numbered when read. A plain
-- UNIQUE constraint on `seq` indexed every new row's NULL as well, so every
-- event written cost an entry in that index on the writer's path (five per
-- checkout). A partial unique index holds only the numbers given, which is
-- all that readers (`seq > $1 ORDER BY seq`) and uniqueness need.

CREATE UNIQUE INDEX ems_outbox_seq_idx ON ems_outbox (seq) WHERE seq IS NOT NULL;
ALTER TABLE ems_outbox DROP CONSTRAINT ems_outbox_seq_key;
