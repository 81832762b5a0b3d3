-- The predicted append (services/store/src/append/fast.rs): a committer that
-- last wrote a strand knows its head, and a request names the version it
-- expects of each stream, so a batch can be planned without reading and sent
-- as this one call. It takes the same locks as the locked path, in the same
-- order (strand heads, then stream guards), checks every prediction under
-- them, and writes only if all hold. A wrong prediction raises OL409 and
-- writes nothing; the committer then reads and takes the locked path.
--
-- SECURITY INVOKER (the default): it runs with the caller's privileges, so
-- opsledger_app still cannot change or remove an event through it.
CREATE FUNCTION append_predicted(
    head_tenants uuid[], head_lanes int2[],
    head_hashes_before bytea[], head_counts_before int8[],
    head_hashes_after bytea[], head_counts_after int8[],
    guard_keys int8[], guard_exclusive bool[],
    check_tenants uuid[], check_streams text[], check_versions int8[],
    event_ids uuid[], event_tenants uuid[], event_streams text[], event_versions int8[],
    event_types text[], event_schema_versions int4[], event_work_classes text[],
    event_payloads text[], event_metadata text[],
    event_occurred timestamptz[], event_recorded timestamptz[],
    event_lanes int2[], event_prev_hashes bytea[], event_hashes bytea[],
    claim_tenants uuid[], claim_keys text[], claim_fingerprints text[], claim_responses text[]
) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    heads_as_predicted integer;
    streams_moved boolean;
    last_position bigint;
BEGIN
    SELECT count(*) FILTER (WHERE locked.as_predicted) INTO heads_as_predicted
    FROM (SELECT h.last_hash = u.p AND h.event_count = u.c AS as_predicted
          FROM tenant_chain_heads h
          JOIN unnest(head_tenants, head_lanes, head_hashes_before, head_counts_before) AS u(t, l, p, c)
            ON h.tenant_id = u.t AND h.chain_lane = u.l
          ORDER BY h.tenant_id, h.chain_lane
          FOR UPDATE OF h) AS locked;
    IF heads_as_predicted <> coalesce(cardinality(head_tenants), 0) THEN
        RAISE EXCEPTION 'a strand head is not where this committer left it'
            USING ERRCODE = 'OL409';
    END IF;

    PERFORM count(CASE WHEN g.x THEN pg_advisory_xact_lock(g.k)::text
                       ELSE pg_advisory_xact_lock_shared(g.k)::text END)
    FROM (SELECT k, x FROM unnest(guard_keys, guard_exclusive) WITH ORDINALITY AS u(k, x, n)
          ORDER BY n) AS g;

    SELECT coalesce(bool_or(coalesce((SELECT max(e.stream_version) FROM events e
                                      WHERE e.tenant_id = u.t AND e.stream_id = u.s), 0) <> u.v), false)
      INTO streams_moved
    FROM unnest(check_tenants, check_streams, check_versions) AS u(t, s, v);
    IF streams_moved THEN
        RAISE EXCEPTION 'a stream is not at the version its append expected'
            USING ERRCODE = 'OL409';
    END IF;

    WITH inserted AS (
        INSERT INTO events (event_id, tenant_id, stream_id, stream_version, event_type,
            schema_version, work_class, payload, metadata, occurred_at, recorded_at,
            chain_lane, prev_hash, hash)
        SELECT e, t, s, v, ty, sv, wc, p::json, m::json, oa, ra, cl, ph, h
        FROM unnest(event_ids, event_tenants, event_streams, event_versions, event_types,
                    event_schema_versions, event_work_classes, event_payloads, event_metadata,
                    event_occurred, event_recorded, event_lanes, event_prev_hashes, event_hashes)
             WITH ORDINALITY AS u(e, t, s, v, ty, sv, wc, p, m, oa, ra, cl, ph, h, n)
        ORDER BY n
        RETURNING position)
    SELECT max(position) INTO last_position FROM inserted;

    UPDATE tenant_chain_heads h SET last_hash = u.hash, event_count = u.c
    FROM unnest(head_tenants, head_lanes, head_hashes_after, head_counts_after) AS u(t, l, hash, c)
    WHERE h.tenant_id = u.t AND h.chain_lane = u.l;

    INSERT INTO idempotency_keys (tenant_id, key, fingerprint, response)
    SELECT t, k, f, r::json
    FROM unnest(claim_tenants, claim_keys, claim_fingerprints, claim_responses) AS u(t, k, f, r);

    RETURN last_position;
END
$$;
