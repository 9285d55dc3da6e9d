//! What operators do with events: look them up, list them, replay them, count them.
//! The JSON API, the dashboard and the CLI all call these, so each rule is written
//! once: one page-size rule, one replay policy.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::domain::event::EventId;
use crate::domain::lifecycle::EventStatus;
use crate::domain::time::Timestamp;
use crate::domain::waiting::{self, HeldBack};
use crate::ops::routing::{self, Routable};
use crate::ops::{DEFAULT_PAGE, MAX_PAGE, Operators, OpsError};
use crate::store::{
    AttemptRecord, EventFilter, EventPage, EventRecord, QueueGauges, ReplayOutcome,
};

/// Delivered events are counted up to this: they are the history, and counting all of
/// them would read all of it.
pub const DELIVERED_COUNT_CAP: u64 = 10_000;

/// The most payload bytes one page of `GET /events?include_payload=true` carries.
pub const LIST_PAYLOAD_BUDGET: usize = 4 * 1024 * 1024;

/// An event as operators see it: with each delivery, why it waits if it does.
#[derive(Debug, Clone)]
pub struct EventDetail {
    pub event: EventRecord,
    /// One per delivery of `event`, in the same order.
    pub deliveries: Vec<DeliveryWait>,
}

/// Why a delivery waits, and its destination's next probe.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryWait {
    /// Set only when the delivery is due and its destination holds it back.
    pub waiting: Option<HeldBack>,
    /// While the destination's breaker is open, for a delivery not delivered.
    pub next_probe_at: Option<Timestamp>,
}

/// Which events a bulk replay queues. A replay of everything is never the default:
/// it has to be asked for by name.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplayScope {
    Matching(EventFilter),
    Everything,
}

impl ReplayScope {
    /// The one replay policy: a filter that matches everything is refused unless
    /// `all` says that is meant; a status must be one a replay starts from.
    pub fn new(filter: EventFilter, all: bool) -> Result<Self, OpsError> {
        if filter.status.is_some_and(|s| !s.is_replayable()) {
            return Err(OpsError::StatusNotReplayable);
        }
        match (filter == EventFilter::default(), all) {
            (true, true) => Ok(Self::Everything),
            (true, false) => Err(OpsError::UnboundedReplay),
            (false, _) => Ok(Self::Matching(filter)),
        }
    }

    fn filter(&self) -> EventFilter {
        match self {
            Self::Matching(filter) => filter.clone(),
            Self::Everything => EventFilter::default(),
        }
    }
}

/// A page size as an operator writes it (`None`: the default).
pub fn page_size(text: Option<&str>) -> Result<usize, OpsError> {
    match text {
        None => Ok(DEFAULT_PAGE),
        Some(text) => text
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or(OpsError::Limit),
    }
}

/// A cursor as this API gave it out (`next_cursor`).
pub fn cursor(text: Option<&str>) -> Result<Option<i64>, OpsError> {
    text.map(|c| c.parse::<i64>().map_err(|_| OpsError::Cursor))
        .transpose()
}

/// Headers as stored (`[[name, value], …]`) back into a map; pairs that are not valid
/// headers are left out.
pub fn stored_headers(json: &str) -> HeaderMap {
    crate::domain::stored_headers::headers_from_json(json)
        .into_iter()
        .filter_map(|(name, value)| {
            Some((
                HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).ok()?,
                HeaderValue::from_bytes(&value).ok()?,
            ))
        })
        .collect()
}

/// Counts for the dashboard's cards.
#[derive(Debug, Clone)]
pub struct Counts {
    pub gauges: QueueGauges,
    /// Up to [`DELIVERED_COUNT_CAP`].
    pub delivered: u64,
}

impl Operators {
    pub async fn get(&self, id: &EventId) -> Result<EventRecord, OpsError> {
        self.store.get_event(id).await?.ok_or(OpsError::NotFound)
    }

    /// The event as operators see it: each delivery that waits says why (its
    /// destination paused, its breaker open, or throttled).
    pub async fn show(&self, id: &EventId) -> Result<EventDetail, OpsError> {
        let event = self.get(id).await?;
        let unfinished = event
            .deliveries
            .iter()
            .any(|d| waiting::is_unfinished(d.state.status));
        let destinations = if unfinished {
            self.destinations().await?
        } else {
            Vec::new()
        };
        let now = Timestamp::now();
        let deliveries = event
            .deliveries
            .iter()
            .map(|delivery| {
                let Some(destination) =
                    destinations.iter().find(|d| d.name == delivery.destination)
                else {
                    return DeliveryWait::default();
                };
                let waiting = waiting::waiting(&delivery.state, now, destination.waiting());
                let probe_matters =
                    waiting.is_some() || delivery.state.status != EventStatus::Delivered;
                DeliveryWait {
                    waiting,
                    next_probe_at: destination.next_probe_at.filter(|_| probe_matters),
                }
            })
            .collect();
        Ok(EventDetail { event, deliveries })
    }

    /// The event a source sent with this idempotency key.
    pub async fn find_by_key(&self, source: &str, key: &str) -> Result<EventRecord, OpsError> {
        self.store
            .find_by_key(source, key)
            .await?
            .ok_or(OpsError::NotFound)
    }

    pub async fn attempts(&self, id: &EventId) -> Result<Vec<AttemptRecord>, OpsError> {
        self.store
            .list_attempts(id)
            .await?
            .ok_or(OpsError::NotFound)
    }

    /// A page of events without their bodies.
    pub async fn list(
        &self,
        filter: &EventFilter,
        limit: usize,
        before: Option<i64>,
    ) -> Result<EventPage, OpsError> {
        self.page(filter, limit, before, false).await
    }

    async fn page(
        &self,
        filter: &EventFilter,
        limit: usize,
        before: Option<i64>,
        bodies: bool,
    ) -> Result<EventPage, OpsError> {
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(OpsError::Limit);
        }
        Ok(self
            .store
            .list_events(filter, limit, before, bodies)
            .await?)
    }

    /// A page of events with their bodies, cut short (at one event at least) where
    /// the bodies pass [`LIST_PAYLOAD_BUDGET`] bytes; the cursor then continues after
    /// the last one kept.
    pub async fn list_with_payloads(
        &self,
        filter: &EventFilter,
        limit: usize,
        before: Option<i64>,
    ) -> Result<EventPage, OpsError> {
        let mut page = self.page(filter, limit, before, true).await?;
        let mut total = 0;
        let kept = page
            .events
            .iter()
            .take_while(|event| {
                total += event.body.len();
                total <= LIST_PAYLOAD_BUDGET
            })
            .count()
            .max(1);
        if kept < page.events.len() {
            page.events.truncate(kept);
            page.next_cursor = page.events.last().map(|event| event.seq);
        }
        Ok(page)
    }

    /// Queues the event's finished deliveries again (only the one to `destination`,
    /// when given); a filtered event is routed again with today's routes. Returns how
    /// many deliveries were queued.
    pub async fn replay(&self, id: &EventId, destination: Option<&str>) -> Result<u64, OpsError> {
        let outcome = self.store.replay(id, destination, &self.budget).await?;
        let queued = match outcome {
            ReplayOutcome::Queued(n) => n,
            ReplayOutcome::NotReplayable(EventStatus::Filtered) => self.route_again(id).await?,
            ReplayOutcome::NotReplayable(status) => return Err(OpsError::NotReplayable(status)),
            ReplayOutcome::NotFound => return Err(OpsError::NotFound),
            ReplayOutcome::NoDelivery => {
                return Err(OpsError::NoDelivery(
                    destination.unwrap_or_default().to_owned(),
                ));
            }
        };
        tracing::info!(
            event_id = %id,
            destination = destination.unwrap_or("all"),
            deliveries = queued,
            "Event replayed"
        );
        Ok(queued)
    }

    /// For an event no route took: each route of its source today, with why it does
    /// not take the event (`routes test`'s explanation). `None` when the source is no
    /// longer accepted.
    pub fn why_filtered(&self, event: &EventRecord) -> Option<routing::Explanation> {
        let (settings, _) = self.sources.resolve(&event.source)?;
        let headers = stored_headers(&event.headers);
        let tree = crate::ops::ingest::body_as_routed(&settings, &headers, &event.body)
            .ok()
            .flatten();
        Some(routing::explain(
            &settings,
            &Routable {
                headers: &headers,
                body: tree.as_ref(),
                raw_body: &event.body,
            },
        ))
    }

    /// Routes a filtered event with the routes configured now.
    async fn route_again(&self, id: &EventId) -> Result<u64, OpsError> {
        let event = self.get(id).await?;
        let Some((settings, _)) = self.sources.resolve(&event.source) else {
            return Err(OpsError::StillFiltered);
        };
        let headers = stored_headers(&event.headers);
        // Read as ingest read it: a text body stays text even when it parses as JSON.
        let tree = crate::ops::ingest::body_as_routed(&settings, &headers, &event.body)
            .ok()
            .flatten();
        let (_, deliveries) = routing::route(
            &settings,
            &self.destinations,
            self.budget.default,
            &Routable {
                headers: &headers,
                body: tree.as_ref(),
                raw_body: &event.body,
            },
        )
        .map_err(|_| OpsError::StillFiltered)?;
        if deliveries.is_empty() {
            return Err(OpsError::StillFiltered);
        }
        let count = deliveries.len() as u64;
        if self.store.add_deliveries(id, deliveries).await? {
            Ok(count)
        } else {
            // Routed meanwhile by another replay: report what it is now.
            Err(OpsError::NotReplayable(self.get(id).await?.status()))
        }
    }

    /// Queues every delivered or dead-lettered delivery in `scope`; how many it queued.
    pub async fn replay_matching(&self, scope: &ReplayScope) -> Result<u64, OpsError> {
        let replayed = self
            .store
            .replay_matching(&scope.filter(), &self.budget)
            .await?;
        tracing::info!(replayed, "Events replayed by filter");
        Ok(replayed)
    }

    pub async fn counts(&self) -> Result<Counts, OpsError> {
        Ok(Counts {
            gauges: self.store.gauges().await?,
            delivered: self.store.count_delivered(DELIVERED_COUNT_CAP).await?,
        })
    }

    pub async fn gauges(&self) -> Result<QueueGauges, OpsError> {
        Ok(self.store.gauges().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_replay_policy() {
        assert!(matches!(
            ReplayScope::new(EventFilter::default(), false),
            Err(OpsError::UnboundedReplay)
        ));
        assert_eq!(
            ReplayScope::new(EventFilter::default(), true).unwrap(),
            ReplayScope::Everything
        );
        let dead = EventFilter {
            status: Some(EventStatus::DeadLettered),
            ..EventFilter::default()
        };
        assert_eq!(
            ReplayScope::new(dead.clone(), false).unwrap(),
            ReplayScope::Matching(dead)
        );
        let queued = EventFilter {
            status: Some(EventStatus::Queued),
            ..EventFilter::default()
        };
        assert!(matches!(
            ReplayScope::new(queued, true),
            Err(OpsError::StatusNotReplayable)
        ));
    }

    #[test]
    fn page_sizes_and_cursors() {
        assert_eq!(page_size(None).unwrap(), DEFAULT_PAGE);
        assert_eq!(page_size(Some("500")).unwrap(), 500);
        for bad in ["0", "501", "-1", "ten", ""] {
            assert!(
                matches!(page_size(Some(bad)), Err(OpsError::Limit)),
                "{bad}"
            );
        }
        assert_eq!(cursor(Some("42")).unwrap(), Some(42));
        assert!(matches!(cursor(Some("x")), Err(OpsError::Cursor)));
    }
}
