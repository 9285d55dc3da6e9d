-- How many attempts an event had when it was last replayed: the backoff of the attempts
-- after a replay starts again from the base delay instead of continuing to grow.
ALTER TABLE events ADD COLUMN attempts_at_replay INTEGER NOT NULL DEFAULT 0;
