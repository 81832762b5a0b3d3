-- Where each firing cycle's events lie in its alert stream. An alert stream
-- (one per dedup key) holds every cycle of that fingerprint, a year of them
-- in real monitoring: an incident's timeline reads only its alerts' own
-- events, by (stream, version) on the events' unique index, instead of whole
-- streams. A cycle's events are contiguous in its stream: a receipt of a
-- firing dedup key repeats the cycle, and a new cycle starts only after the
-- last one resolved.
--
-- Rows written before this migration keep NULLs until `opsledger rebuild
-- alerts`; readers then fall back to the whole stream.
ALTER TABLE proj_alerts
    ADD COLUMN first_version bigint,
    ADD COLUMN last_version bigint;

-- A downtime report reads every segment of its services in a period: a
-- year of 500 services is some 120,000 rows. Covering them in the index
-- (in the report's order) lets PostgreSQL answer from the index alone
-- rather than visit a heap page per row, as the old index made it.
DROP INDEX proj_impact_segments_by_service;
CREATE INDEX proj_impact_segments_by_service
    ON proj_impact_segments (tenant_id, service_id, start_at, incident_id, seq)
    INCLUDE (end_at, level);
