-- Fan-out: an event (what arrived, stored once) and one delivery per destination it was
-- routed to. The delivery carries the lifecycle that the event carried before: it is
-- what is claimed, leased, attempted, retried, dead-lettered and replayed. An event
-- with no delivery matched no route ("filtered").
--
-- Each existing event becomes an event with one delivery, keeping its state, attempts
-- and history: to the destination named after its source when it arrived for the
-- source's `destination`, else to the built-in processor.
CREATE TABLE deliveries (
    seq                BIGSERIAL PRIMARY KEY,
    event_id           TEXT    NOT NULL,
    destination        TEXT    NOT NULL,
    status             TEXT    NOT NULL
        CHECK (status IN ('queued', 'processing', 'retrying', 'delivered', 'dead_lettered')),
    attempts           INTEGER NOT NULL DEFAULT 0,
    max_attempts       INTEGER NOT NULL,
    attempts_at_replay INTEGER NOT NULL DEFAULT 0,
    last_error         TEXT,
    next_attempt_at    BIGINT,
    attempt_started_at BIGINT,
    lease_until        BIGINT,
    updated_at         BIGINT  NOT NULL,
    UNIQUE (event_id, destination)
);
INSERT INTO deliveries (event_id, destination, status, attempts, max_attempts,
                        attempts_at_replay, last_error, next_attempt_at,
                        attempt_started_at, lease_until, updated_at)
SELECT id, CASE WHEN forward THEN source ELSE 'built-in' END, status, attempts,
       max_attempts, attempts_at_replay, last_error, next_attempt_at,
       attempt_started_at, lease_until, updated_at
FROM events ORDER BY seq;
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status IN ('queued', 'retrying');
CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE lease_until IS NOT NULL;
CREATE INDEX deliveries_dead ON deliveries (seq) WHERE status = 'dead_lettered';

-- Each attempt names the destination it went to.
ALTER TABLE attempts ADD COLUMN destination TEXT NOT NULL DEFAULT 'built-in';
UPDATE attempts a SET destination = d.destination
FROM deliveries d WHERE d.event_id = a.event_id;

-- The event keeps what arrived, and its type (for routing it again on replay).
DROP INDEX events_due;
DROP INDEX events_leased;
DROP INDEX events_dead;
ALTER TABLE events
    DROP COLUMN status, DROP COLUMN attempts, DROP COLUMN max_attempts,
    DROP COLUMN last_error, DROP COLUMN next_attempt_at, DROP COLUMN attempt_started_at,
    DROP COLUMN lease_until, DROP COLUMN updated_at, DROP COLUMN attempts_at_replay,
    DROP COLUMN forward,
    ADD COLUMN event_type TEXT;

-- What every worker must agree on about a destination, and what operators see of it.
CREATE TABLE destinations (
    name            TEXT    PRIMARY KEY,
    last_success_at BIGINT,
    last_failure_at BIGINT
);
