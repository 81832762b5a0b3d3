-- The order functions of V19, unchanged in what they answer, rewritten in
-- PL/pgSQL (issue 18's P1 check, SPEC §11).
--
-- A LANGUAGE sql function whose body reads a table cannot be inlined, and
-- PostgreSQL plans its body again at every call: `event_at_or_before`, which
-- every projection checkpoint runs, cost about 100 µs a call in planning
-- alone, and `event_tx_id`, which every append batch runs, about 13 µs.
-- PL/pgSQL keeps each body's plan for the session: about 9 µs and 4 µs.
-- Under P1's load, thousands of such calls a second compete with the
-- appends for the same two cores.
CREATE OR REPLACE FUNCTION event_tx_id() RETURNS xid8
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT (pg_current_xact_id()::text::int8 + shift)::text::xid8 FROM tx_id_shift);
END
$$;

CREATE OR REPLACE FUNCTION event_horizon() RETURNS xid8
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT (pg_snapshot_xmin(pg_current_snapshot())::text::int8 + shift)::text::xid8
            FROM tx_id_shift);
END
$$;

CREATE OR REPLACE FUNCTION event_tx_bound() RETURNS xid8
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT (pg_snapshot_xmax(pg_current_snapshot())::text::int8 + shift)::text::xid8
            FROM tx_id_shift);
END
$$;

CREATE OR REPLACE FUNCTION event_at_or_before(tx xid8, pos bigint) RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN coalesce((
        SELECT position FROM (
            (SELECT e.tx_id, e.position FROM events e
              WHERE (e.tx_id, e.position) <= (tx, pos)
                AND e.stream_id NOT LIKE 'alert-%' AND e.stream_id NOT LIKE 'group-%'
              ORDER BY e.tx_id DESC, e.position DESC LIMIT 1)
            UNION ALL
            (SELECT e.tx_id, e.position FROM events e
              WHERE (e.tx_id, e.position) <= (tx, pos)
                AND (e.stream_id LIKE 'alert-%' OR e.stream_id LIKE 'group-%')
              ORDER BY e.tx_id DESC, e.position DESC LIMIT 1)
        ) last ORDER BY tx_id DESC, position DESC LIMIT 1), 0);
END
$$;
