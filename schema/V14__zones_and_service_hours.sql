-- Calendar periods in the client's time zone (SPEC §6): a client's zone,
-- else its tenant's, else UTC; and the hours of the week a service's SLA
-- commits to, and whether its incidents mitigate when their alerts resolve.
ALTER TABLE proj_tenants ADD COLUMN time_zone text;
ALTER TABLE proj_clients ADD COLUMN time_zone text;
ALTER TABLE proj_services
    ADD COLUMN sla_hours jsonb,
    ADD COLUMN auto_mitigate boolean NOT NULL DEFAULT false;
