-- A window's planned time lies between the earlier of its start and when it
-- started, and the later of its end and when it ended. Reports ask which
-- windows reach into a period: kept as columns (and indexed), they are
-- compared without reading every window's JSON state.
ALTER TABLE proj_windows ADD COLUMN span_start timestamptz, ADD COLUMN span_end timestamptz;
UPDATE proj_windows
   SET span_start = LEAST(start_at, (state->>'started_at')::timestamptz),
       span_end = GREATEST(end_at, (state->>'ended_at')::timestamptz);
ALTER TABLE proj_windows ALTER COLUMN span_start SET NOT NULL, ALTER COLUMN span_end SET NOT NULL;
CREATE INDEX proj_windows_span ON proj_windows (tenant_id, span_end);
