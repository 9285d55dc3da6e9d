//! The dashboard's HTML. maud escapes every value it interpolates, so payloads, headers
//! and error texts from senders and destinations cannot inject markup.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::chart::{self, Hour};
use super::session::CSRF_FIELD;
use crate::domain::lifecycle::EventStatus;
use crate::domain::protection::{Limits, OnDeadLetter};
use crate::domain::time::Timestamp;
use crate::domain::waiting::{DestinationState, HeldBack};
use crate::ops::destinations::DestinationStatus;
use crate::ops::events::DeliveryWait;
use crate::store::{
    AlertRecord, AttemptRecord, EventFilter, EventRecord, FilterError, MinuteRow, QueueGauges,
    WAITING_COUNT_CAP,
};

/// Above this many, the delivered count reads "10000+": counting further would read
/// the whole history on every page view. It counts among the newest 100,000
/// deliveries.
pub use crate::ops::events::DELIVERED_COUNT_CAP;

const STYLE: &str = r#"
:root { color-scheme: light; --line: #d9dde3; --muted: #5b6472; --accent: #1f5fbf; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1c2230; background: #f6f7f9; }
header { background: #1c2230; color: #fff; padding: 10px 24px; display: flex; gap: 16px; align-items: baseline; }
header a { color: #fff; text-decoration: none; font-weight: 600; font-size: 16px; }
header span { color: #aab3c2; }
main { padding: 20px 24px; max-width: 1200px; }
h1 { font-size: 20px; margin: 0 0 12px; word-break: break-all; }
h2 { font-size: 16px; margin: 24px 0 8px; }
a { color: var(--accent); }
.counts { display: flex; gap: 12px; flex-wrap: wrap; margin-bottom: 8px; }
.count { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 10px 16px; min-width: 130px; text-decoration: none; color: inherit; }
.count b { display: block; font-size: 22px; }
.count.selected { border-color: var(--accent); box-shadow: 0 0 0 1px var(--accent); }
.muted { color: var(--muted); }
form.filter, form.find { display: flex; gap: 8px; flex-wrap: wrap; align-items: end; margin: 16px 0; }
form.filter label, form.find label { display: flex; flex-direction: column; font-size: 12px; color: var(--muted); }
input, select, button { font: inherit; padding: 5px 8px; border: 1px solid var(--line); border-radius: 4px; background: #fff; }
button { cursor: pointer; background: var(--accent); color: #fff; border-color: var(--accent); }
button.secondary { background: #fff; color: var(--accent); }
table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid var(--line); }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: #eef0f3; font-weight: 600; font-size: 12px; color: var(--muted); }
.id { font-family: ui-monospace, monospace; font-size: 12px; }
.status { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; background: #e8ebf0; }
.status.delivered { background: #dcf3e3; color: #16623a; }
.status.dead_lettered { background: #fbe0e0; color: #9b1c1c; }
.status.retrying { background: #fdf0d5; color: #8a5a00; }
.status.processing { background: #dde9fb; color: #1f4f99; }
.status.filtered { background: #eef0f3; color: #5b6472; }
header nav { display: flex; gap: 14px; }
header nav a { font-size: 14px; font-weight: 500; }
form.inline { display: inline; margin: 0; }
.notice { padding: 8px 12px; border-radius: 4px; margin: 12px 0; background: #dcf3e3; }
.notice.error { background: #fbe0e0; }
pre { background: #fff; border: 1px solid var(--line); padding: 10px; overflow: auto; max-height: 480px; margin: 0; font-size: 12px; }
dl { display: grid; grid-template-columns: max-content auto; gap: 4px 16px; background: #fff; border: 1px solid var(--line); padding: 12px; margin: 0; }
dt { color: var(--muted); }
dd { margin: 0; word-break: break-word; }
.actions { margin: 12px 0; display: flex; gap: 8px; align-items: center; }
.pager { margin: 12px 0; }
svg.chart { display: block; background: #fff; }
svg.chart.full { border: 1px solid var(--line); padding: 8px; max-width: 760px; height: auto; }
svg.chart text { font: 11px system-ui, sans-serif; fill: #1c2230; }
svg.chart text.scale { fill: var(--muted); font-size: 10px; }
.legend { font-size: 12px; color: var(--muted); margin: 4px 0 0; }
"#;

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · hookrelay" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    a href="/ui" { "hookrelay" }
                    nav {
                        a href="/ui" { "Events" }
                        a href="/ui/destinations" { "Destinations" }
                        a href="/ui/sign-out" { "Sign out" }
                    }
                }
                main { (body) }
            }
        }
    }
}

fn status_badge(status: EventStatus) -> Markup {
    html! { span class={ "status " (status.as_str()) } title=(status.description()) { (status.as_str()) } }
}

/// `2026-11-30 13:17:21Z`: seconds are enough for a person.
fn time(at: Timestamp) -> String {
    let full = at.to_rfc3339();
    match full.split_once('.') {
        Some((seconds, _)) => format!("{}Z", seconds.replacen('T', " ", 1)),
        None => full.replacen('T', " ", 1),
    }
}

/// A form field as typed; an empty one means "any".
pub fn given(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// What the list is narrowed to, as the operator typed it.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct FilterForm {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

impl FilterForm {
    /// From form fields, where an empty field means "any" (see [`given`]).
    pub fn new(
        status: Option<String>,
        source: Option<String>,
        destination: Option<String>,
        since: Option<String>,
        until: Option<String>,
    ) -> Self {
        Self {
            status: given(status),
            source: given(source),
            destination: given(destination),
            since: given(since),
            until: given(until),
        }
    }

    pub fn parse(&self) -> Result<EventFilter, FilterError> {
        EventFilter::parse(
            self.status.as_deref(),
            self.source.clone(),
            self.destination.clone(),
            self.since.as_deref(),
            self.until.as_deref(),
        )
    }

    /// This filter as a query string with `extra` pairs, for links that keep it.
    fn query(&self, extra: &[(&str, &str)]) -> String {
        let mut pairs = self.fields();
        pairs.extend_from_slice(extra);
        serde_urlencoded::to_string(&pairs).unwrap_or_default()
    }

    /// The fields that are set, as (name, value).
    fn fields(&self) -> Vec<(&str, &str)> {
        [
            ("status", &self.status),
            ("source", &self.source),
            ("destination", &self.destination),
            ("since", &self.since),
            ("until", &self.until),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.as_deref().map(|v| (name, v)))
        .collect()
    }

    fn replayable(&self) -> bool {
        self.status
            .as_deref()
            .and_then(|s| s.parse::<EventStatus>().ok())
            .is_some_and(EventStatus::is_replayable)
    }
}

pub struct Overview<'a> {
    pub gauges: &'a QueueGauges,
    pub delivered: u64,
    pub filter: &'a FilterForm,
    pub events: &'a [EventRecord],
    pub next_cursor: Option<i64>,
    pub notice: Option<String>,
    pub error: Option<String>,
    pub csrf: &'a str,
}

/// A waiting figure: counted up to a cap (a day's backlog is not read on every page
/// view), so the cap reads "10000+".
fn capped_count(n: i64) -> String {
    if n >= WAITING_COUNT_CAP {
        format!("{WAITING_COUNT_CAP}+")
    } else {
        n.to_string()
    }
}

pub fn overview(page: &Overview<'_>) -> Markup {
    let gauges = page.gauges;
    let delivered = if page.delivered >= DELIVERED_COUNT_CAP {
        format!("{DELIVERED_COUNT_CAP}+")
    } else {
        page.delivered.to_string()
    };
    let counts = [
        (EventStatus::Queued, capped_count(gauges.queued)),
        (EventStatus::Processing, gauges.processing.to_string()),
        (EventStatus::Retrying, capped_count(gauges.retrying)),
        (
            EventStatus::DeadLettered,
            capped_count(gauges.dead_lettered),
        ),
        (EventStatus::Delivered, delivered),
    ];
    let selected = page.filter.status.as_deref();
    layout(
        "Events",
        html! {
            div class="counts" {
                @for (status, count) in &counts {
                    a class={ "count" @if selected == Some(status.as_str()) { " selected" } }
                        href={ "/ui?status=" (status.as_str()) }
                        data-status=(status.as_str()) {
                        b { (count) }
                        span class="muted" { (status.as_str()) }
                    }
                }
            }
            p class="muted" {
                "Oldest due event waiting: " (format!("{:.1}", gauges.queue_lag.as_secs_f64())) " s"
            }
            @if let Some(notice) = &page.notice { div class="notice" { (notice) } }
            @if let Some(error) = &page.error { div class="notice error" role="alert" { (error) } }
            form class="find" method="get" action="/ui/find" {
                label { "Event id or idempotency key" input name="q" size="40" placeholder="evt_… or the sender's id"; }
                label { "Source (for a key)" input name="source" placeholder="stripe"; }
                button type="submit" { "Find" }
            }
            (filter_form(page.filter))
            @if page.filter.replayable() {
                form class="actions" method="post" action="/ui/replay" {
                    input type="hidden" name=(CSRF_FIELD) value=(page.csrf);
                    @for (name, value) in page.filter.fields() {
                        input type="hidden" name=(name) value=(value);
                    }
                    button type="submit" class="secondary" { "Replay every matching event" }
                }
            }
            (event_table(page.events))
            @if let Some(cursor) = page.next_cursor {
                p class="pager" {
                    a href={ "/ui?" (page.filter.query(&[("cursor", &cursor.to_string())])) } { "Older events →" }
                }
            }
        },
    )
}

fn filter_form(filter: &FilterForm) -> Markup {
    let status = filter.status.as_deref().unwrap_or("");
    html! {
        form class="filter" method="get" action="/ui" {
            label { "Status"
                select name="status" {
                    option value="" selected[status.is_empty()] { "any" }
                    @for option in EventStatus::ALL {
                        option value=(option.as_str()) selected[status == option.as_str()] { (option.as_str()) }
                    }
                }
            }
            label { "Source" input name="source" value=[filter.source.as_deref()] placeholder="any"; }
            label { "Destination" input name="destination" value=[filter.destination.as_deref()] placeholder="any"; }
            label { "Received since" input name="since" value=[filter.since.as_deref()] placeholder="2026-11-30T00:00:00Z"; }
            label { "Received before" input name="until" value=[filter.until.as_deref()] placeholder="RFC 3339"; }
            button type="submit" { "Filter" }
            a href="/ui" { "Clear" }
        }
    }
}

fn event_table(events: &[EventRecord]) -> Markup {
    html! {
        table id="events" {
            thead { tr { th { "Event" } th { "Source" } th { "Type" } th { "Status" } th { "Deliveries" } th { "Attempts" } th { "Received" } th { "Last error" } } }
            tbody {
                @for event in events {
                    @let summary = event.summary();
                    tr {
                        td class="id" { a href={ "/ui/events/" (event.id) } { (event.id) } }
                        td { (event.source) }
                        td { (event.event_type.as_deref().unwrap_or("")) }
                        td { (status_badge(event.status())) }
                        td { (event.deliveries.len()) }
                        td { @if let Some(s) = summary { (s.attempts) " / " (s.max_attempts) } }
                        td { (time(event.created_at)) }
                        td { (summary.and_then(|s| s.last_error.as_deref()).unwrap_or("")) }
                    }
                }
                @if events.is_empty() {
                    tr { td colspan="8" class="muted" { "No events match." } }
                }
            }
        }
    }
}

pub struct EventPage<'a> {
    pub event: &'a EventRecord,
    pub attempts: &'a [AttemptRecord],
    pub notice: Option<&'a str>,
    pub csrf: &'a str,
    /// Why each of its deliveries waits, if it does.
    pub waits: &'a [DeliveryWait],
    /// For an event no route took: why each route of its source does not take it.
    pub why_filtered: Option<&'a crate::ops::routing::Explanation>,
}

/// Why a delivery waits, for a person.
fn waiting_note(wait: &DeliveryWait) -> Option<String> {
    Some(match wait.waiting? {
        HeldBack::Paused => "waiting: destination paused".to_owned(),
        HeldBack::BreakerOpen => match wait.next_probe_at {
            Some(at) => format!("waiting: breaker open, next probe {}", time(at)),
            None => "waiting: breaker open".to_owned(),
        },
        HeldBack::Throttled => "waiting: throttled".to_owned(),
    })
}

pub fn event(page: &EventPage<'_>) -> Markup {
    let event = page.event;
    let headers: Vec<(String, String)> = crate::ingest::headers_from_json(&event.headers)
        .into_iter()
        .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
        .collect();
    layout(
        event.id.as_str(),
        html! {
            p { a href="/ui" { "← All events" } }
            h1 { (event.id) }
            @if let Some(notice) = page.notice { div class="notice" { (notice) } }
            @let status = event.status();
            dl {
                dt { "Status" } dd { (status_badge(status)) " " span class="muted" { (status.description()) } }
                dt { "Source" } dd { (event.source) }
                dt { "Event type" } dd { (event.event_type.as_deref().unwrap_or("—")) }
                dt { "Idempotency key" } dd class="id" { (event.idempotency_key) }
                dt { "Received" } dd { (time(event.created_at)) }
                dt { "Content type" } dd { (event.content_type.as_deref().unwrap_or("—")) }
            }
            h2 { "Deliveries" }
            @if event.deliveries.is_empty() {
                p class="muted" { "No route of its source matched this event." }
                @if let Some(explanation) = page.why_filtered {
                    ul id="why-filtered" {
                        @for (index, (destination, verdict, why)) in explanation.routes.iter().enumerate() {
                            li {
                                "Route " (index) " → " (destination) ": "
                                @if *verdict == crate::domain::routing::Verdict::Matched {
                                    "matches with the routes configured now"
                                } @else {
                                    (verdict.describe())
                                    @if let Some(why) = why { " (" code { (why) } ")" }
                                }
                            }
                        }
                    }
                }
                form class="actions" method="post" action={ "/ui/events/" (event.id) "/replay" } {
                    input type="hidden" name=(CSRF_FIELD) value=(page.csrf);
                    button type="submit" { "Route again" }
                    span class="muted" { "Routes the event with the routes configured now." }
                }
            } @else {
                table id="deliveries" {
                    thead { tr { th { "Destination" } th { "Status" } th { "Attempts" } th { "Updated" } th { "Next attempt" } th { "Last error" } th {} } }
                    tbody {
                        @for (delivery, wait) in event.deliveries.iter().zip(page.waits) {
                            @let state = &delivery.state;
                            tr data-destination=(delivery.destination) {
                                td { a href={ "/ui/destinations/" (delivery.destination) } { (delivery.destination) } }
                                td {
                                    (status_badge(state.status))
                                    @if let Some(note) = waiting_note(wait) {
                                        " " span class="muted waiting" { (note) }
                                    }
                                }
                                td { (state.attempts) " of " (state.max_attempts) }
                                td { (time(state.updated_at)) }
                                td { @if state.status == EventStatus::Retrying { @if let Some(next) = state.next_attempt_at { (time(next)) } } }
                                td { (state.last_error.as_deref().unwrap_or("")) }
                                td {
                                    @if state.status.is_replayable() {
                                        form class="inline" method="post" action={ "/ui/events/" (event.id) "/replay?destination=" (delivery.destination) } {
                                            input type="hidden" name=(CSRF_FIELD) value=(page.csrf);
                                            button type="submit" { "Replay" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                p class="muted" { "Replay queues a finished delivery again with a fresh set of attempts; its history is kept." }
            }
            h2 { "Attempts" }
            table id="attempts" {
                thead { tr { th { "Destination" } th { "#" } th { "Started" } th { "Duration" } th { "Status" } th { "Error" } th { "Response" } } }
                tbody {
                    @for attempt in page.attempts {
                        tr {
                            td { (attempt.destination) }
                            td { (attempt.attempt) @if attempt.probe { " " span class="muted" title="Sent as the probe of an open breaker" { "(probe)" } } }
                            td { (time(attempt.started_at)) }
                            td { (attempt.duration.as_millis()) " ms" }
                            td { (attempt.status_code.map(|c| c.to_string()).unwrap_or_else(|| "—".into())) }
                            td { (attempt.error.as_deref().unwrap_or("")) }
                            td { @if let Some(body) = &attempt.response_body { pre { (truncated(body, 1024)) } } }
                        }
                    }
                    @if page.attempts.is_empty() {
                        tr { td colspan="7" class="muted" { "No attempts yet." } }
                    }
                }
            }
            h2 { "Headers" }
            table id="headers" {
                thead { tr { th { "Name" } th { "Value" } } }
                tbody {
                    @for (name, value) in &headers {
                        tr { td { (name) } td class="id" { (value) } }
                    }
                }
            }
            h2 { "Payload" }
            pre id="payload" { (payload_text(&event.body)) }
        },
    )
}

fn age(seconds: Option<f64>) -> String {
    match seconds {
        None => "—".into(),
        Some(s) if s < 120.0 => format!("{s:.1} s"),
        Some(s) if s < 7200.0 => format!("{:.1} min", s / 60.0),
        Some(s) => format!("{:.1} h", s / 3600.0),
    }
}

/// The last alert, as a person reads it: what, when, and whether it went out.
fn alert_text(alert: &AlertRecord) -> String {
    let what = alert
        .kind
        .as_str()
        .trim_start_matches("destination.")
        .replace('_', " ");
    let sent = match (alert.sent_at, &alert.last_error) {
        (Some(_), _) => "sent".to_owned(),
        (None, Some(error)) => format!("not sent yet: {error}"),
        (None, None) => "pending".to_owned(),
    };
    format!("{what} at {} ({sent})", time(alert.created_at))
}

fn destination_rows(
    destinations: &[DestinationStatus],
    hours: &std::collections::BTreeMap<String, Vec<MinuteRow>>,
) -> Markup {
    let now = Timestamp::now();
    html! {
        table id="destinations" {
            thead { tr { th { "Destination" } th { "State" } th { "Last hour" } th { "Backlog" } th { "Scheduled" } th { "In flight" } th { "Oldest due" } th { "Last success" } th { "Last failure" } th { "Last alert" } } }
            tbody {
                @for d in destinations {
                    @let hour = Hour::from_rows(hours.get(&d.name).into_iter().flatten(), now);
                    tr data-destination=(d.name) {
                        td {
                            a href={ "/ui/destinations/" (d.name) } { (d.name) }
                            @if !d.configured { " " span class="muted" { "(not configured)" } }
                        }
                        td {
                            span class={ "status " (d.state.as_str()) } { (d.state.as_str()) }
                            @if d.throttled && d.state == DestinationState::Active { " " span class="muted" { "throttled" } }
                            @if d.stats.lagging_since.is_some() { " " span class="muted" { "lagging" } }
                        }
                        td { (chart::svg(&d.name, &hour, chart::Size::Compact)) }
                        td { (capped_count(d.stats.backlog)) }
                        td { (d.stats.scheduled) }
                        td { (d.stats.in_flight) }
                        td { (age(d.oldest_due_age.map(|a| a.as_secs_f64()))) }
                        td { (d.stats.last_success_at.map(time).unwrap_or_else(|| "—".into())) }
                        td { (d.stats.last_failure_at.map(time).unwrap_or_else(|| "—".into())) }
                        td class="last-alert" { (d.stats.last_alert.as_ref().map(alert_text).unwrap_or_else(|| "—".into())) }
                    }
                }
                @if destinations.is_empty() {
                    tr { td colspan="10" class="muted" { "No destinations are configured and none has deliveries." } }
                }
            }
        }
        p class="legend" { "Last hour, one column per minute: deliveries (top row), failed attempts (hatched, middle row), deliveries waiting (dashed line, bottom row). Hover a minute for its figures." }
    }
}

pub fn destinations(
    destinations: &[DestinationStatus],
    hours: &std::collections::BTreeMap<String, Vec<MinuteRow>>,
) -> Markup {
    layout(
        "Destinations",
        html! {
            h1 { "Destinations" }
            p class="muted" { "Backlog: deliveries due now. Scheduled: waiting for a later retry." }
            (destination_rows(destinations, hours))
        },
    )
}

pub struct DestinationPage<'a> {
    pub destination: &'a DestinationStatus,
    pub recent: &'a [EventRecord],
    /// Every destination's minutes of the last hour, by name.
    pub hours: &'a std::collections::BTreeMap<String, Vec<MinuteRow>>,
    pub notice: Option<&'a str>,
    pub csrf: &'a str,
}

fn limits_text(limits: &Limits) -> String {
    let mut parts = Vec::new();
    match limits.rate {
        Some(rate) => parts.push(format!("rate {rate}")),
        None => parts.push("no rate limit".to_owned()),
    }
    if let Some(max) = limits.max_in_flight {
        parts.push(format!("at most {max} in flight"));
    }
    match limits.ordered {
        Some(OnDeadLetter::Skip) => parts.push("ordered per key, skipping dead letters".into()),
        Some(OnDeadLetter::Block) => parts.push("ordered per key, blocked by dead letters".into()),
        None => {}
    }
    match limits.breaker {
        Some(policy) => parts.push(format!(
            "breaker opens after {} failures in a row",
            policy.failures
        )),
        None => parts.push("breaker off".into()),
    }
    parts.join("; ")
}

pub fn destination(page: &DestinationPage<'_>) -> Markup {
    let destination = page.destination;
    let action = |verb: &str| format!("/ui/destinations/{}/{verb}", destination.name);
    let hour = Hour::from_rows(
        page.hours.get(&destination.name).into_iter().flatten(),
        Timestamp::now(),
    );
    layout(
        &destination.name,
        html! {
            p { a href="/ui/destinations" { "← All destinations" } }
            h1 { (destination.name) }
            @if let Some(notice) = page.notice { div class="notice" { (notice) } }
            dl {
                dt { "URL" } dd class="id" { (destination.url.as_deref().unwrap_or("—")) }
                dt { "State" } dd id="state" {
                    (destination.state.as_str())
                    @match destination.state {
                        DestinationState::Paused => {
                            " " span class="muted" { "since " (destination.stats.paused_at.map(time).unwrap_or_default()) "; events are stored, deliveries wait and use no attempts" }
                        }
                        DestinationState::Failing => {
                            " " span class="muted" {
                                "breaker open since " (destination.failing_since.map(time).unwrap_or_default())
                                "; next probe " (destination.next_probe_at.map(time).unwrap_or_default())
                                "; waiting deliveries use no attempts"
                            }
                        }
                        DestinationState::Active => {
                            @if destination.throttled { " " span class="muted" { "throttled: deliveries are held back for its rate or in-flight limit" } }
                        }
                    }
                }
                @if let Some(limits) = &destination.limits {
                    dt { "Limits" } dd { (limits_text(limits)) }
                }
                @if let Some(since) = destination.stats.lagging_since {
                    dt { "Lagging" } dd { "its oldest due delivery has waited since " (time(since)) }
                }
                dt { "Last alert" } dd id="last-alert" { (destination.stats.last_alert.as_ref().map(alert_text).unwrap_or_else(|| "none".into())) }
            }
            h2 { "Last hour" }
            (chart::svg(&destination.name, &hour, chart::Size::Full))
            p class="legend" { (hour.summary(&destination.name)) ". One column per minute; hover a minute for its figures." }
            @if destination.configured {
                @if destination.state == DestinationState::Paused {
                    form class="actions" method="post" action=(action("resume")) {
                        input type="hidden" name=(CSRF_FIELD) value=(page.csrf);
                        button type="submit" { "Resume" }
                        span class="muted" { "Deliveries start again; the backlog drains at the destination's rate." }
                    }
                } @else {
                    form class="actions" method="post" action=(action("pause")) {
                        input type="hidden" name=(CSRF_FIELD) value=(page.csrf);
                        button type="submit" { "Pause" }
                        span class="muted" { "Every worker stops sending here; events keep being accepted and stored." }
                    }
                }
            }
            h2 { "Now" }
            (destination_rows(
                std::slice::from_ref(destination),
                page.hours,
            ))
            h2 { "Recent events" }
            p { a href={ "/ui?destination=" (destination.name) } { "All events routed here →" } }
            (event_table(page.recent))
        },
    )
}

/// Pretty JSON when the body is JSON, else the text as received. Indented from the
/// text itself, never re-encoded through a parsed value: key order, `10.50` and
/// integers beyond 64 bits are shown as they were sent.
fn payload_text(body: &[u8]) -> String {
    match std::str::from_utf8(body) {
        Ok(text) if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() => {
            indent_json(text).unwrap_or_else(|| text.to_owned())
        }
        _ => String::from_utf8_lossy(body).into_owned(),
    }
}

/// Indentation stops growing past this depth, so a deeply nested body cannot make
/// the page grow with the square of its depth.
const MAX_INDENT_DEPTH: usize = 16;

/// Re-indents valid JSON text: two spaces a level (up to [`MAX_INDENT_DEPTH`]), one
/// member or item a line. `None` when that would be more than a few times the text's
/// own size (a body of nothing but brackets): the page then shows the text as sent.
fn indent_json(text: &str) -> Option<String> {
    fn newline(out: &mut String, depth: usize) {
        out.push('\n');
        for _ in 0..depth.min(MAX_INDENT_DEPTH) {
            out.push_str("  ");
        }
    }
    let budget = text.len() * 4 + 4096;
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let (mut in_string, mut escaped) = (false, false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                while chars.peek().is_some_and(|n| n.is_whitespace()) {
                    chars.next();
                }
                if let Some(&close) = chars.peek().filter(|n| matches!(n, '}' | ']')) {
                    // An empty object or array stays on its line.
                    out.push(close);
                    chars.next();
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
        if out.len() > budget {
            return None;
        }
    }
    Some(out)
}

fn truncated(text: &str, limit: usize) -> &str {
    let mut end = text.len().min(limit);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// After `GET /ui/sign-out`.
pub fn signed_out() -> Markup {
    layout(
        "Signed out",
        html! {
            h1 { "Signed out" }
            p { "This browser's dashboard session is over. Open "
                code { "/ui?token=<HOOKRELAY_ADMIN_TOKEN>" } " to sign in again." }
        },
    )
}

/// Why the dashboard would not open, and (for a sign-in problem) a link back to the
/// page asked for.
pub fn refusal(title: &str, message: &str, retry: Option<&str>) -> Markup {
    layout(
        title,
        html! {
            h1 { (title) }
            div class="notice error" role="alert" { (message) }
            @if let Some(retry) = retry {
                p { "Signed in already in this browser? " a href=(retry) { "Open the page again" } "." }
            }
        },
    )
}

pub fn error(title: &str, message: &str) -> Markup {
    layout(
        title,
        html! {
            h1 { (title) }
            div class="notice error" role="alert" { (message) }
            p { a href="/ui" { "← All events" } }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_shown_to_the_second() {
        assert_eq!(
            time(Timestamp(1_764_508_641_123_456)),
            "2025-11-30 13:17:21Z"
        );
    }

    #[test]
    fn payloads_are_pretty_when_json_and_verbatim_otherwise() {
        assert_eq!(payload_text(br#"{"a":1}"#), "{\n  \"a\": 1\n}");
        assert_eq!(payload_text(b"a=1&b=2"), "a=1&b=2");
    }

    #[test]
    fn pretty_payloads_keep_numbers_keys_and_strings_as_sent() {
        let sent = br#"{"z":10.50,"big":123456789012345678901234567890,"s":"a,\"b\":[c]","e":{},"l":[ ],"n":[1,[2]]}"#;
        assert_eq!(
            payload_text(sent),
            "{\n  \"z\": 10.50,\n  \"big\": 123456789012345678901234567890,\n  \"s\": \"a,\\\"b\\\":[c]\",\n  \"e\": {},\n  \"l\": [],\n  \"n\": [\n    1,\n    [\n      2\n    ]\n  ]\n}"
        );
    }

    #[test]
    fn deep_payloads_render_in_linear_size() {
        // 10,000 levels: indentation that grew with depth made this 200 MB.
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let shown = payload_text(deep.as_bytes());
        assert!(
            shown.len() <= deep.len() * 4 + 4096,
            "{} bytes",
            shown.len()
        );
        let nested = format!("{}1{}", "[".repeat(40), "]".repeat(40));
        let shown = payload_text(nested.as_bytes());
        assert!(shown.len() <= nested.len() * 4 + 4096);
        let widest = shown.lines().map(str::len).max().unwrap();
        assert!(widest <= 2 * MAX_INDENT_DEPTH + 1, "{widest}");
    }

    #[test]
    fn filter_links_keep_the_filter() {
        let filter = FilterForm {
            status: Some("dead_lettered".into()),
            source: Some("git hub".into()),
            ..FilterForm::default()
        };
        assert_eq!(
            filter.query(&[("cursor", "42")]),
            "status=dead_lettered&source=git+hub&cursor=42"
        );
        assert!(filter.replayable());
        assert!(!FilterForm::default().replayable());
    }

    #[test]
    fn markup_from_senders_is_escaped() {
        assert!(
            error("x", "<script>alert(1)</script>")
                .into_string()
                .contains("&lt;script&gt;")
        );
    }
}
