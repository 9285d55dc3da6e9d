//! The events pages: the overview with its list and filter, and one event.

use maud::{Markup, html};

use super::layout::*;
use crate::domain::lifecycle::EventStatus;
use crate::domain::waiting::HeldBack;
use crate::http::ui::session::CSRF_FIELD;
use crate::ops::events::DELIVERED_COUNT_CAP;
use crate::ops::events::DeliveryWait;
use crate::store::{AttemptRecord, EventFilter, EventRecord, FilterError, QueueGauges};

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

pub struct EventPage<'a> {
    pub event: &'a EventRecord,
    /// The trace it was taken in under, and where that trace is shown.
    pub trace: Option<(&'a str, Option<&'a str>)>,
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
    let headers: Vec<(String, String)> =
        crate::domain::stored_headers::headers_from_json(&event.headers)
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
                @if let Some((trace_id, url)) = page.trace {
                    dt { "Trace" }
                    dd id="trace" class="id" {
                        @if let Some(url) = url { a href=(url) { (trace_id) } } @else { (trace_id) }
                    }
                }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
