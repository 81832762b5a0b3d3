-- The global order of the events people work with: every stream but the
-- alerts' and their groups'. Monitoring writes those by the thousand (an
-- alert storm is one receipt per alert), and no follower reads them: the
-- alerts read model is written by the append itself. A follower of other
-- streams scanned events_tx_position through every receipt of a storm only
-- to skip it, each follower every time it looked (ten followers, a fifth of
-- a 2-core machine under P1). Through this index it meets only its own kind
-- of event. A receipt pays for the predicate only, never for an entry.
--
-- The predicate is spelled exactly as `read::read_after_of` spells its
-- condition, which is what lets the planner prove the index applies.
CREATE INDEX events_followed_tx_position ON events (tx_id, position)
    WHERE stream_id NOT LIKE 'alert-%' AND stream_id NOT LIKE 'group-%';
