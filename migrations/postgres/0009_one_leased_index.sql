-- Leased deliveries are found by lease expiry (sweeps, the next wake-up) and counted
-- per destination (`max_in_flight`, an open breaker): one index serves both. It holds
-- only deliveries in flight, so counting one destination's reads a few entries; and
-- since a lease or an outcome writes a new row version into every index whose
-- predicate holds, one index instead of two is one entry fewer per lease.
DROP INDEX deliveries_leased;
DROP INDEX deliveries_leased_by_destination;
CREATE INDEX deliveries_leased ON deliveries (lease_until, destination)
    WHERE lease_until IS NOT NULL;
