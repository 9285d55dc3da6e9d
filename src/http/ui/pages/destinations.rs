//! The destinations pages: every destination, and one with its limits and latest
//! events.

use maud::{Markup, html};

use super::layout::*;
use crate::domain::protection::{Limits, OnDeadLetter};
use crate::domain::time::Timestamp;
use crate::domain::waiting::DestinationState;
use crate::http::ui::chart::{self, Hour};
use crate::http::ui::session::CSRF_FIELD;
use crate::ops::destinations::DestinationStatus;
use crate::store::{AlertRecord, EventRecord, MinuteRow};

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
                            @if let Some((kind, _)) = d.kind { " " span class="muted kind" { (kind.as_str()) } }
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
                @if let Some((kind, format)) = destination.kind {
                    dt { "Kind" } dd id="kind" { (kind.as_str()) }
                    dt { "Format" } dd id="format" { (format.as_str()) }
                }
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
