-- Fan-out: an event (what arrived, stored once) and one delivery per destination it was
-- routed to. The delivery carries the lifecycle that the event carried before: it is
-- what is claimed, leased, attempted, retried, dead-lettered and replayed. An event
-- with no delivery matched no route ("filtered").
--
-- Each existing event becomes an event with one delivery, keeping its state, attempts
-- and history: to the destination named after its source when it arrived for the
-- source's `destination`, else to the built-in processor.
CREATE TABLE deliveries (
    seq                INTEGER PRIMARY KEY,
    event_id           TEXT    NOT NULL,
    destination        TEXT    NOT NULL,
    status             TEXT    NOT NULL
        CHECK (status IN ('queued', 'processing', 'retrying', 'delivered', 'dead_lettered')),
    attempts           INTEGER NOT NULL DEFAULT 0,
    max_attempts       INTEGER NOT NULL,
    attempts_at_replay INTEGER NOT NULL DEFAULT 0,
    last_error         TEXT,
    next_attempt_at    INTEGER,
    attempt_started_at INTEGER,
    lease_until        INTEGER,
    updated_at         INTEGER NOT NULL,
    UNIQUE (event_id, destination)
);
INSERT INTO deliveries (event_id, destination, status, attempts, max_attempts,
                        attempts_at_replay, last_error, next_attempt_at,
                        attempt_started_at, lease_until, updated_at)
SELECT id, CASE WHEN forward = 1 THEN source ELSE 'built-in' END, status, attempts,
       max_attempts, attempts_at_replay, last_error, next_attempt_at,
       attempt_started_at, lease_until, updated_at
FROM events ORDER BY seq;
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status IN ('queued', 'retrying');
CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE lease_until IS NOT NULL;
CREATE INDEX deliveries_dead ON deliveries (seq) WHERE status = 'dead_lettered';

-- Each attempt names the destination it went to.
ALTER TABLE attempts ADD COLUMN destination TEXT NOT NULL DEFAULT 'built-in';
UPDATE attempts SET destination = COALESCE(
    (SELECT d.destination FROM deliveries d WHERE d.event_id = attempts.event_id), 'built-in');

-- The event keeps what arrived, and its type (for routing it again on replay).
CREATE TABLE events_stored (
    seq             INTEGER PRIMARY KEY,
    id              TEXT    NOT NULL UNIQUE,
    source          TEXT    NOT NULL,
    idempotency_key TEXT    NOT NULL,
    event_type      TEXT,
    created_at      INTEGER NOT NULL,
    content_type    TEXT,
    headers         TEXT    NOT NULL,
    body            BLOB    NOT NULL,
    UNIQUE (source, idempotency_key)
);
INSERT INTO events_stored (seq, id, source, idempotency_key, created_at, content_type,
                           headers, body)
SELECT seq, id, source, idempotency_key, created_at, content_type, headers, body
FROM events;
DROP TABLE events;
ALTER TABLE events_stored RENAME TO events;

-- What every worker must agree on about a destination, and what operators see of it.
CREATE TABLE destinations (
    name            TEXT    PRIMARY KEY,
    last_success_at INTEGER,
    last_failure_at INTEGER
);
