-- The transparency log (SPEC §3.9). The sequencer, a projection, gives each
-- event a dense leaf index in its tenant's Merkle tree in the order the
-- projections follow (behind the gap-safe horizon, so the order is final)
-- and keeps the tree as C2SP tlog-tiles: tiles of up to 256 hashes at tree
-- levels 0, 8, 16, ... A full tile never changes; the tile at the right edge
-- of each level grows until it is full. Any proof needs a handful of tiles.
-- Leaves, tiles and trees are rebuilt from the events like any read model;
-- the checkpoints signed over them are not (see below).
CREATE TABLE audit_leaves (
    tenant_id   uuid NOT NULL,
    leaf_index  bigint NOT NULL CHECK (leaf_index >= 0),
    position    bigint NOT NULL,
    event_id    uuid NOT NULL,
    PRIMARY KEY (tenant_id, leaf_index)
);
-- Inclusion proofs name the event.
CREATE INDEX audit_leaves_by_event ON audit_leaves (tenant_id, event_id);

CREATE TABLE audit_tiles (
    tenant_id   uuid NOT NULL,
    -- Tile level: the tree level of its hashes divided by 8.
    level       smallint NOT NULL CHECK (level >= 0),
    idx         bigint NOT NULL CHECK (idx >= 0),
    hashes      bytea NOT NULL CHECK (length(hashes) BETWEEN 32 AND 8192 AND length(hashes) % 32 = 0),
    PRIMARY KEY (tenant_id, level, idx)
);

CREATE TABLE audit_trees (
    tenant_id   uuid PRIMARY KEY,
    size        bigint NOT NULL CHECK (size >= 0),
    root        bytea NOT NULL CHECK (length(root) = 32)
);

-- Every checkpoint the service signed: evidence like the events themselves,
-- so never updated or deleted, and never emptied by a rebuild. Before it
-- signs a tree head, the signer proves it consistent with the last one here.
CREATE TABLE audit_checkpoints (
    tenant_id   uuid NOT NULL,
    size        bigint NOT NULL CHECK (size > 0),
    root        bytea NOT NULL CHECK (length(root) = 32),
    -- The C2SP signed note, exactly as served.
    note        text NOT NULL,
    key_name    text NOT NULL,
    signed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, size)
);

CREATE TRIGGER audit_checkpoints_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION events_refuse_change();
CREATE TRIGGER audit_checkpoints_no_truncate
    BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();

-- The signer's last refusal per tenant: a tree head it would not sign
-- because it is not consistent with the last checkpoint (tampering, or a
-- rebuild over altered events). Cleared when it signs again.
CREATE TABLE audit_refusals (
    tenant_id   uuid PRIMARY KEY,
    size        bigint NOT NULL,
    reason      text NOT NULL,
    refused_at  timestamptz NOT NULL DEFAULT now()
);

REVOKE ALL ON audit_leaves, audit_tiles, audit_trees, audit_checkpoints, audit_refusals FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON audit_leaves, audit_tiles, audit_trees TO opsledger_app;
GRANT SELECT, INSERT ON audit_checkpoints TO opsledger_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON audit_refusals TO opsledger_app;
