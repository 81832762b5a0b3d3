-- Who is told of a change's steps (issue 16, SPEC §9): the staff roles a
-- responder is registered with (those with `approver` are asked to approve
-- changes), and the change a notification is about. Rows written before
-- hold no roles and no change, as their events say.
ALTER TABLE proj_users ADD COLUMN roles text[] NOT NULL DEFAULT '{}';
ALTER TABLE proj_notifications ADD COLUMN change_id uuid;

-- A person's notices of change steps, newest first (the console lists them
-- by the signed-in subject, which is an address).
CREATE INDEX proj_notifications_change_notices
    ON proj_notifications (tenant_id, lower(email), requested_at DESC)
    WHERE change_id IS NOT NULL;
