-- The global order survives a restore, and no checkpoint holds a
-- transaction id (SPEC §10; issue 17).
--
-- Events are ordered by (tx_id, position) and read below the oldest running
-- transaction (see `read`). A dump restored into a fresh cluster keeps its
-- events' tx_id values, but the new cluster counts transactions from the
-- start again: its new events would sort before the old ones, and every
-- follower, already past the old ones, would never read them. So an event's
-- tx_id is the writing transaction's id plus a shift, and the horizon is
-- shifted alike. The shift is 0 until `migrate` (which every start runs)
-- finds the cluster's transaction ids behind the stored ones, and raises it
-- past them (`store::order::realign`).
CREATE TABLE tx_id_shift (
    only_row        boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    shift           bigint NOT NULL DEFAULT 0 CHECK (shift >= 0),
    shifted_at      timestamptz
);
INSERT INTO tx_id_shift DEFAULT VALUES;
REVOKE ALL ON tx_id_shift FROM PUBLIC;
GRANT SELECT ON tx_id_shift TO opsledger_app;

-- The order key of an event this transaction appends. Reading the shift
-- takes a lock on tx_id_shift that the realignment's ACCESS EXCLUSIVE lock
-- waits for, so no append straddles a change of shift.
CREATE FUNCTION event_tx_id() RETURNS xid8
LANGUAGE sql STABLE AS $$
    SELECT (pg_current_xact_id()::text::int8 + shift)::text::xid8 FROM tx_id_shift
$$;

-- Every event below this is committed: the oldest running transaction, shifted.
CREATE FUNCTION event_horizon() RETURNS xid8
LANGUAGE sql STABLE AS $$
    SELECT (pg_snapshot_xmin(pg_current_snapshot())::text::int8 + shift)::text::xid8
    FROM tx_id_shift
$$;

-- Every event committed before now sorts below this: the next transaction
-- id to be assigned, shifted.
CREATE FUNCTION event_tx_bound() RETURNS xid8
LANGUAGE sql STABLE AS $$
    SELECT (pg_snapshot_xmax(pg_current_snapshot())::text::int8 + shift)::text::xid8
    FROM tx_id_shift
$$;

ALTER TABLE events ALTER COLUMN tx_id SET DEFAULT event_tx_id();

-- A checkpoint is the position of the last event at or before it in the
-- global order. Transaction ids are per cluster (per node under Citus) and a
-- restore or a shard move changes them, so none is kept here: the follower
-- looks the event's tx_id up when it resumes. A checkpoint moved to the
-- horizon (tx_id H, position 0) becomes the last event below H, which is the
-- same place: every event below the horizon is final.

-- The position of the last event at or before (tx, pos) in the global order,
-- 0 when there is none: one step down each of the two global-order indexes,
-- whose predicates are spelled as `read` spells them.
CREATE FUNCTION event_at_or_before(tx xid8, pos bigint) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce((
        SELECT position FROM (
            (SELECT tx_id, position FROM events
              WHERE (tx_id, position) <= (tx, pos)
                AND stream_id NOT LIKE 'alert-%' AND stream_id NOT LIKE 'group-%'
              ORDER BY tx_id DESC, position DESC LIMIT 1)
            UNION ALL
            (SELECT tx_id, position FROM events
              WHERE (tx_id, position) <= (tx, pos)
                AND (stream_id LIKE 'alert-%' OR stream_id LIKE 'group-%')
              ORDER BY tx_id DESC, position DESC LIMIT 1)
        ) last ORDER BY tx_id DESC, position DESC LIMIT 1), 0)
$$;

UPDATE projection_checkpoints SET last_position = event_at_or_before(last_tx_id, last_position);
ALTER TABLE projection_checkpoints DROP COLUMN last_tx_id;

-- Where each projection stands, with the tx_id of its checkpoint's event
-- looked up (0 before the first): what a follower resumes from. NULL when
-- that event is gone, which only an altered log can do: the follower then
-- stops there, naming it, rather than start again from nothing.
CREATE VIEW projection_cursors AS
    SELECT c.*, CASE WHEN c.last_position = 0 THEN '0' ELSE e.tx_id END AS last_tx_id
    FROM projection_checkpoints c LEFT JOIN events e ON e.position = c.last_position;
REVOKE ALL ON projection_cursors FROM PUBLIC;
GRANT SELECT ON projection_cursors TO opsledger_app;
