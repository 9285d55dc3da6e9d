-- Whether the event's source had a destination when the event arrived. Such an event is
-- never handed to the built-in processor: if the destination is gone from the config
-- (or missing from a worker's), its attempts fail and it dead-letters, visibly,
-- instead of being marked delivered without reaching the application.
ALTER TABLE events ADD COLUMN forward BOOLEAN NOT NULL DEFAULT false;
