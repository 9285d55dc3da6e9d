-- Lets /metrics count dead-lettered events without reading the whole history.
CREATE INDEX events_dead ON events (seq) WHERE status = 'dead_lettered';
