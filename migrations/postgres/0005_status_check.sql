-- Only the lifecycle's statuses can be stored: a status the domain does not know is
-- refused by the database itself.
ALTER TABLE events ADD CONSTRAINT events_status_check
    CHECK (status IN ('queued', 'processing', 'retrying', 'delivered', 'dead_lettered'));
