-- A counter on each event's row that every change to what a hold is planned
-- against moves: units taken on the event, its tiers or shared quotas, a tier
-- or shared quota added or edited, the event itself edited.
--
-- A store that remembers an event's inventory as its last hold batch left it
-- can then place the next batch in one statement, conditional on the counter
-- still being what it remembers (the statement takes the event's row, so a
-- concurrent change either committed first, and the condition fails, or
-- waits). That saves the batch the round trips of reading the event under an
-- explicit transaction while the row is locked.

ALTER TABLE ems_events ADD COLUMN seq bigint NOT NULL DEFAULT 0;
