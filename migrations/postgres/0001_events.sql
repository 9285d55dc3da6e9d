-- Events and their attempts. Timestamps are microseconds since the Unix epoch.
CREATE TABLE events (
    seq                BIGSERIAL PRIMARY KEY,
    id                 TEXT    NOT NULL UNIQUE,
    source             TEXT    NOT NULL,
    idempotency_key    TEXT    NOT NULL,
    status             TEXT    NOT NULL,
    attempts           INTEGER NOT NULL DEFAULT 0,
    max_attempts       INTEGER NOT NULL,
    last_error         TEXT,
    -- When a queued or retrying event is due.
    next_attempt_at    BIGINT,
    -- While processing: when the current attempt started and when its lease runs out.
    attempt_started_at BIGINT,
    lease_until        BIGINT,
    created_at         BIGINT  NOT NULL,
    updated_at         BIGINT  NOT NULL,
    content_type       TEXT,
    headers            TEXT    NOT NULL,
    body               BYTEA   NOT NULL,
    UNIQUE (source, idempotency_key)
);

-- Claims read only these partial indexes, so their cost does not grow with history.
-- Only processing events hold a lease. The leased index is keyed on that, not on the
-- status: a status predicate would tempt PostgreSQL's planner, whose statistics may say
-- nothing is processing, into scanning it for by-id updates that also check
-- status = 'processing'.
CREATE INDEX events_due ON events (next_attempt_at) WHERE status IN ('queued', 'retrying');
CREATE INDEX events_leased ON events (lease_until) WHERE lease_until IS NOT NULL;

CREATE TABLE attempts (
    seq           BIGSERIAL PRIMARY KEY,
    event_id      TEXT    NOT NULL,
    attempt       INTEGER NOT NULL,
    started_at    BIGINT  NOT NULL,
    duration_us   BIGINT  NOT NULL,
    status_code   INTEGER,
    error         TEXT,
    response_body TEXT
);
CREATE INDEX attempts_by_event ON attempts (event_id, started_at);

CREATE TABLE hookrelay_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
