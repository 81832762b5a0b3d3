-- The predicted append (services/store/src/append/fast.rs): a committer that
-- last wrote a strand knows its head, and a request names the version it
-- expects of each stream, so a batch can be planned without reading and sent
-- in one pipeline. Its statements take the same locks as the locked path, in
-- the same order (strand heads, then stream guards), and check every
-- prediction under them before anything is written; a wrong one calls this
-- function, which raises OL409, and the transaction writes nothing. The
-- committer then reads and takes the locked path.
CREATE FUNCTION append_refused(reason text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'predicted append refused: %', reason USING ERRCODE = 'OL409';
END
$$;

-- An alert's labels and recorded decision are kept and shown, never queried
-- inside: json (checked, stored as sent) costs every receipt less than jsonb
-- (parsed into a binary form).
ALTER TABLE proj_alerts
    ALTER COLUMN labels TYPE json USING labels::json,
    ALTER COLUMN decision TYPE json USING decision::json;

-- The expiry worker's question (firing, and ended or not refreshed) has an OR
-- that this index on ends_at cannot answer alone, so the planner never used
-- it, while every receipt paid for it. The partial index on firing alerts'
-- groups bounds that scan to the alerts still firing.
DROP INDEX proj_alerts_firing_ends;
