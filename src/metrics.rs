//! Prometheus metrics: counters and histograms recorded as things happen, and gauges
//! read from the store when `/metrics` is scraped.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::ops::ingest::{Accepted, Ingested, KnownSource};
use crate::store::QueueGauges;
use crate::telemetry::TraceCounters;

/// Distinct `source` label values kept for sources that are accepted without being
/// configured; the rest are counted as `_other`. Configured sources always have
/// their own label.
const MAX_SOURCES: usize = 200;
/// The label of webhook requests refused before their source was known to be one
/// hookrelay accepts (a malformed name, an unknown source, an unmatched path).
pub const UNKNOWN_SOURCE: &str = "_unknown";

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const DELIVERED_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0,
];

pub struct Metrics {
    registry: Registry,
    webhooks: IntCounterVec,
    ingest_seconds: HistogramVec,
    attempts: IntCounterVec,
    attempt_seconds: Histogram,
    accept_to_delivered_seconds: Histogram,
    expired_leases: IntCounter,
    events: IntGaugeVec,
    queue_lag_seconds: prometheus::Gauge,
    waits: IntCounterVec,
    probes: IntCounterVec,
    destination_state: IntGaugeVec,
    destination_backlog: IntGaugeVec,
    destination_oldest_due: prometheus::GaugeVec,
    sources: RwLock<HashSet<String>>,
    /// Finished spans by what became of them; only when tracing is on.
    trace_spans: IntCounterVec,
    traces: std::sync::OnceLock<Arc<TraceCounters>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// One set per process, handed to the parts that record into it.
    pub fn new() -> Self {
        let registry = Registry::new();
        let webhooks = IntCounterVec::new(
            Opts::new(
                "hookrelay_webhooks_total",
                "Webhook requests by source, outcome (accepted, duplicate, refused) and reason",
            ),
            &["source", "outcome", "reason"],
        )
        .expect("valid metric");
        let ingest_seconds = HistogramVec::new(
            HistogramOpts::new(
                "hookrelay_ingest_duration_seconds",
                "Time to answer a webhook request, durable commit included",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["outcome"],
        )
        .expect("valid metric");
        let attempts = IntCounterVec::new(
            Opts::new(
                "hookrelay_attempts_total",
                "Finished delivery attempts by destination and the state they left the \
                 delivery in",
            ),
            &["destination", "outcome"],
        )
        .expect("valid metric");
        let attempt_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "hookrelay_attempt_duration_seconds",
                "Duration of one attempt",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        let accept_to_delivered_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "hookrelay_accept_to_delivered_seconds",
                "From an event's arrival to its successful delivery",
            )
            .buckets(DELIVERED_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        let expired_leases = IntCounter::new(
            "hookrelay_expired_leases_total",
            "Attempts whose worker stopped before finishing (counted as failed)",
        )
        .expect("valid metric");
        let events = IntGaugeVec::new(
            Opts::new(
                "hookrelay_events",
                "Deliveries by status, each counted up to 10000 (delivered ones are not counted)",
            ),
            &["status"],
        )
        .expect("valid metric");
        let queue_lag_seconds = prometheus::Gauge::new(
            "hookrelay_queue_lag_seconds",
            "How long the oldest due event has been waiting for a worker",
        )
        .expect("valid metric");
        let trace_spans = IntCounterVec::new(
            Opts::new(
                "hookrelay_trace_spans_total",
                "Finished trace spans by outcome: exported, dropped (the export queue was \
                 full: the OTLP endpoint is slow or down) or failed (the endpoint refused \
                 them or did not answer)",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let waits = IntCounterVec::new(
            Opts::new(
                "hookrelay_destination_waits_total",
                "Claims that left a destination's due deliveries waiting, by reason \
                 (paused, breaker_open, throttled, in_flight_limit)",
            ),
            &["destination", "reason"],
        )
        .expect("valid metric");
        let probes = IntCounterVec::new(
            Opts::new(
                "hookrelay_probes_total",
                "Probes of an open breaker started",
            ),
            &["destination"],
        )
        .expect("valid metric");
        let destination_state = IntGaugeVec::new(
            Opts::new(
                "hookrelay_destination_state",
                "1 for the state each destination is in (active, paused, failing)",
            ),
            &["destination", "state"],
        )
        .expect("valid metric");
        let destination_backlog = IntGaugeVec::new(
            Opts::new(
                "hookrelay_destination_backlog",
                "Deliveries due now, by destination, counted up to 10000",
            ),
            &["destination"],
        )
        .expect("valid metric");
        let destination_oldest_due = prometheus::GaugeVec::new(
            Opts::new(
                "hookrelay_destination_oldest_due_seconds",
                "How long each destination's oldest due delivery has waited",
            ),
            &["destination"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(webhooks.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(waits.clone()),
            Box::new(probes.clone()),
            Box::new(destination_state.clone()),
            Box::new(destination_backlog.clone()),
            Box::new(destination_oldest_due.clone()),
            Box::new(ingest_seconds.clone()),
            Box::new(attempts.clone()),
            Box::new(attempt_seconds.clone()),
            Box::new(accept_to_delivered_seconds.clone()),
            Box::new(expired_leases.clone()),
            Box::new(events.clone()),
            Box::new(queue_lag_seconds.clone()),
        ] {
            registry.register(collector).expect("unique metric names");
        }
        Self {
            registry,
            webhooks,
            ingest_seconds,
            attempts,
            attempt_seconds,
            accept_to_delivered_seconds,
            expired_leases,
            events,
            queue_lag_seconds,
            waits,
            probes,
            destination_state,
            destination_backlog,
            destination_oldest_due,
            sources: RwLock::default(),
            trace_spans,
            traces: std::sync::OnceLock::new(),
        }
    }

    fn source_label(&self, source: Option<&KnownSource>) -> String {
        let Some(source) = source else {
            return UNKNOWN_SOURCE.into();
        };
        if source.configured {
            return source.name.to_string();
        }
        let source = source.name.as_str();
        // Almost always a known source: a shared read lock, no writer contention.
        if self.sources.read().is_ok_and(|seen| seen.contains(source)) {
            return source.to_owned();
        }
        let Ok(mut seen) = self.sources.write() else {
            return "_other".into();
        };
        if seen.contains(source) || seen.len() < MAX_SOURCES {
            seen.insert(source.to_owned());
            return source.to_owned();
        }
        "_other".into()
    }

    /// One webhook request, from what became of it.
    pub fn webhook(&self, ingested: &Ingested, seconds: f64) {
        let (outcome, reason) = match &ingested.result {
            Ok(Accepted::Stored(_)) => ("accepted", ""),
            Ok(Accepted::Duplicate(_)) => ("duplicate", ""),
            // Slack's url_verification handshake: answered, not stored.
            Ok(Accepted::Challenge(_)) => ("answered", ""),
            Err(refusal) => ("refused", refusal.code().as_str()),
        };
        self.count_webhook(ingested.source.as_ref(), outcome, reason, seconds);
    }

    /// A request under `/webhooks/` that never reached a source: not a route.
    pub fn webhook_unrouted(&self, reason: &str, seconds: f64) {
        self.count_webhook(None, "refused", reason, seconds);
    }

    fn count_webhook(
        &self,
        source: Option<&KnownSource>,
        outcome: &str,
        reason: &str,
        seconds: f64,
    ) {
        let source = self.source_label(source);
        self.webhooks
            .with_label_values(&[source.as_str(), outcome, reason])
            .inc();
        self.ingest_seconds
            .with_label_values(&[outcome])
            .observe(seconds);
    }

    /// `outcome` is the status the attempt left the delivery in. Destination names
    /// come from the config file, so the label is bounded like configured sources.
    pub fn attempt(&self, destination: &str, outcome: &str, seconds: f64) {
        self.attempts
            .with_label_values(&[destination, outcome])
            .inc();
        self.attempt_seconds.observe(seconds);
    }

    pub fn delivered_after(&self, seconds: f64) {
        self.accept_to_delivered_seconds.observe(seconds);
    }

    pub fn expired_leases(&self, count: usize) {
        self.expired_leases.inc_by(count as u64);
    }

    /// A claim left a destination's due deliveries waiting (`reason`: [`Wait::as_str`]).
    ///
    /// [`Wait::as_str`]: crate::domain::protection::Wait::as_str
    pub fn wait(&self, destination: &str, reason: &str) {
        self.waits.with_label_values(&[destination, reason]).inc();
    }

    pub fn probe(&self, destination: &str) {
        self.probes.with_label_values(&[destination]).inc();
    }

    /// The text exposition, with the gauges set from `gauges` and each destination's
    /// `(name, state, backlog, oldest due age)`.
    /// Counts the trace export's spans from now on.
    pub fn count_traces(&self, counters: Arc<TraceCounters>) {
        if self.traces.set(counters).is_ok() {
            let _ = self.registry.register(Box::new(self.trace_spans.clone()));
        }
    }

    pub fn render(
        &self,
        gauges: &QueueGauges,
        destinations: &[(String, &str, i64, f64)],
    ) -> String {
        if let Some(traces) = self.traces.get() {
            for (outcome, count) in [
                ("exported", &traces.exported),
                ("dropped", &traces.dropped),
                ("failed", &traces.failed),
            ] {
                let counter = self.trace_spans.with_label_values(&[outcome]);
                let now = count.load(std::sync::atomic::Ordering::Relaxed);
                counter.inc_by(now.saturating_sub(counter.get()));
            }
        }
        self.destination_state.reset();
        for (name, state, backlog, oldest) in destinations {
            self.destination_state
                .with_label_values(&[name.as_str(), state])
                .set(1);
            self.destination_backlog
                .with_label_values(&[name])
                .set(*backlog);
            self.destination_oldest_due
                .with_label_values(&[name])
                .set(*oldest);
        }
        for (status, count) in [
            ("queued", gauges.queued),
            ("retrying", gauges.retrying),
            ("processing", gauges.processing),
            ("dead_lettered", gauges.dead_lettered),
        ] {
            self.events.with_label_values(&[status]).set(count);
        }
        self.queue_lag_seconds.set(gauges.queue_lag.as_secs_f64());
        let mut buffer = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::{EventId, SourceName};

    fn stored(name: &str, configured: bool) -> Ingested {
        Ingested {
            source: Some(KnownSource {
                name: SourceName::parse(name).unwrap(),
                configured,
                verifies: false,
            }),
            event_type: None,
            result: Ok(Accepted::Stored(EventId::generate())),
        }
    }

    #[test]
    fn configured_sources_keep_their_label_when_the_others_are_full() {
        let metrics = Metrics::new();
        for i in 0..MAX_SOURCES + 5 {
            metrics.webhook(&stored(&format!("unconfigured-{i}"), false), 0.0);
        }
        metrics.webhook(&stored("billing", true), 0.0);
        metrics.webhook(
            &Ingested {
                source: None,
                event_type: None,
                result: Err(crate::ops::ingest::Refusal::InvalidSource),
            },
            0.0,
        );
        let text = metrics.render(&QueueGauges::default(), &[]);
        assert!(text.contains("source=\"billing\""), "{text}");
        assert!(text.contains("source=\"_other\""), "{text}");
        assert!(text.contains("source=\"_unknown\""), "{text}");
        assert!(
            !text.contains(&format!("unconfigured-{}", MAX_SOURCES + 1)),
            "{text}"
        );
    }
}
