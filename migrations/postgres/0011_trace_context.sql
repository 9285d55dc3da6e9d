-- The W3C trace context of the span that took the event in (`traceparent`, then
-- `tracestate` after a newline), so that every later attempt joins the same trace.
-- NULL when tracing is off.
ALTER TABLE events ADD COLUMN trace_context TEXT;
