-- Alerts to a person: durable, so that one that cannot be sent now is sent later, and
-- raised inside the transaction that changed the destination, so that each is raised
-- once however many workers run.
CREATE TABLE alerts (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    destination TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- The start of the episode the alert is about (the breaker's opening, the lag's
    -- start, the dead-letter digest's window): one alert per kind and episode, however
    -- many workers see it.
    episode BIGINT,
    -- Dead-letter digests: how many, and the latest event.
    count BIGINT NOT NULL DEFAULT 0,
    event_id TEXT,
    -- What the message says (JSON), fixed when the alert is raised.
    details TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until BIGINT,
    sent_at BIGINT,
    last_error TEXT
);
CREATE UNIQUE INDEX alerts_episode ON alerts (destination, kind, episode)
    WHERE episode IS NOT NULL;
CREATE INDEX alerts_due ON alerts (next_attempt_at) WHERE status = 'pending';
CREATE INDEX alerts_by_destination ON alerts (destination, id);

-- An open lag episode: since when the oldest due delivery was due.
ALTER TABLE destinations ADD COLUMN lagging_since BIGINT;
-- A breaker closed by a batch of successes (written in one statement, without a
-- transaction): the start of the episode it ended, until a worker's monitor raises
-- its recovery alert.
ALTER TABLE destinations ADD COLUMN recovered_from BIGINT;

-- Per destination and minute (its start, microseconds): outcomes counted as they are
-- written, and the most deliveries seen waiting; the dashboard's charts read it.
CREATE TABLE destination_minutes (
    destination TEXT NOT NULL,
    minute BIGINT NOT NULL,
    delivered BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    backlog BIGINT,
    PRIMARY KEY (destination, minute)
);
