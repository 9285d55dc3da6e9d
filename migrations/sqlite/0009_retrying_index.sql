-- Deliveries waiting for a retry, by destination: counting them reads only them, however
-- many other deliveries wait (a day's outage behind an open breaker). Only failed
-- attempts write into it.
CREATE INDEX deliveries_retrying ON deliveries (destination) WHERE status = 'retrying';
