-- Only the lifecycle's statuses can be stored: a status the domain does not know is
-- refused by the database itself. SQLite adds a CHECK only by rebuilding the table;
-- every row is copied as it is, `seq` included.
CREATE TABLE events_checked (
    seq                INTEGER PRIMARY KEY,
    id                 TEXT    NOT NULL UNIQUE,
    source             TEXT    NOT NULL,
    idempotency_key    TEXT    NOT NULL,
    status             TEXT    NOT NULL
        CHECK (status IN ('queued', 'processing', 'retrying', 'delivered', 'dead_lettered')),
    attempts           INTEGER NOT NULL DEFAULT 0,
    max_attempts       INTEGER NOT NULL,
    last_error         TEXT,
    next_attempt_at    INTEGER,
    attempt_started_at INTEGER,
    lease_until        INTEGER,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    content_type       TEXT,
    headers            TEXT    NOT NULL,
    body               BLOB    NOT NULL,
    attempts_at_replay INTEGER NOT NULL DEFAULT 0,
    forward            INTEGER NOT NULL DEFAULT 0,
    UNIQUE (source, idempotency_key)
);
INSERT INTO events_checked (seq, id, source, idempotency_key, status, attempts, max_attempts,
                            last_error, next_attempt_at, attempt_started_at, lease_until,
                            created_at, updated_at, content_type, headers, body,
                            attempts_at_replay, forward)
SELECT seq, id, source, idempotency_key, status, attempts, max_attempts,
       last_error, next_attempt_at, attempt_started_at, lease_until,
       created_at, updated_at, content_type, headers, body,
       attempts_at_replay, forward
FROM events;
DROP TABLE events;
ALTER TABLE events_checked RENAME TO events;
CREATE INDEX events_due ON events (next_attempt_at) WHERE status IN ('queued', 'retrying');
CREATE INDEX events_leased ON events (lease_until) WHERE lease_until IS NOT NULL;
CREATE INDEX events_dead ON events (seq) WHERE status = 'dead_lettered';
