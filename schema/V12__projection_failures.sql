-- A projection that cannot apply an event stays at it: skipping would lose a
-- fact from its read model for good. It says so here, so that /readyz and
-- /metrics on every instance (not only the one holding the projection) can
-- name the event and the error. A checkpoint that moves clears them.
ALTER TABLE projection_checkpoints
    ADD COLUMN failing_since    timestamptz,
    ADD COLUMN failing_position bigint,
    ADD COLUMN failing_event    text,
    ADD COLUMN failing_error    text;
