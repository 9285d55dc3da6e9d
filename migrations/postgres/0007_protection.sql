-- Protecting the application: each destination's pause, breaker and token bucket live
-- here, so that every worker process sharing the database obeys the same state.
ALTER TABLE destinations ADD COLUMN paused BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE destinations ADD COLUMN paused_at BIGINT;
-- Failures of the destination's making since its last success.
ALTER TABLE destinations ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
-- An open breaker: since when, when the next probe may start, the pause after a
-- failed probe (microseconds).
ALTER TABLE destinations ADD COLUMN breaker_since BIGINT;
ALTER TABLE destinations ADD COLUMN probe_at BIGINT;
ALTER TABLE destinations ADD COLUMN probe_pause_us BIGINT;
-- The token bucket of `rate`: tokens held at `tokens_at`.
ALTER TABLE destinations ADD COLUMN tokens DOUBLE PRECISION;
ALTER TABLE destinations ADD COLUMN tokens_at BIGINT;
-- The last time a claim held deliveries back for `rate` or `max_in_flight`.
ALTER TABLE destinations ADD COLUMN throttled_at BIGINT;

-- Ordered destinations: the key a delivery is ordered by ('' when the event has none);
-- NULL for unordered destinations.
ALTER TABLE deliveries ADD COLUMN ordering_key TEXT;
-- Whether an earlier delivery of the same key is unfinished: delivered rows leave the
-- index, so it holds only what can still hold a key back.
CREATE INDEX deliveries_ordered ON deliveries (destination, ordering_key, seq)
    WHERE ordering_key IS NOT NULL AND status <> 'delivered';

-- Claims are made per destination.
DROP INDEX deliveries_due;
CREATE INDEX deliveries_due ON deliveries (destination, next_attempt_at)
    WHERE status IN ('queued', 'retrying');
CREATE INDEX deliveries_leased_by_destination ON deliveries (destination)
    WHERE lease_until IS NOT NULL;

-- Attempts that probed an open breaker.
ALTER TABLE attempts ADD COLUMN probe BOOLEAN NOT NULL DEFAULT false;
