-- An alert joining an incident is recorded on the alert's own stream (its
-- receipt), no longer as an event of the incident: an incident's alerts, and
-- how many there were at any instant, are read from the alerts read model.
ALTER TABLE proj_incidents DROP COLUMN alert_count;
CREATE INDEX proj_alerts_incident ON proj_alerts (tenant_id, incident_id, first_seen)
    WHERE incident_id IS NOT NULL;
