//! What every dashboard page shares: the frame, the style, badges and times, and the
//! pages that only say something went wrong.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::domain::lifecycle::EventStatus;
use crate::domain::time::Timestamp;
use crate::store::{EventRecord, WAITING_COUNT_CAP};

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

pub fn layout(title: &str, body: Markup) -> Markup {
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

pub fn status_badge(status: EventStatus) -> Markup {
    html! { span class={ "status " (status.as_str()) } title=(status.description()) { (status.as_str()) } }
}

/// `2026-11-30 13:17:21Z`: seconds are enough for a person.
pub fn time(at: Timestamp) -> String {
    let full = at.to_rfc3339();
    match full.split_once('.') {
        Some((seconds, _)) => format!("{}Z", seconds.replacen('T', " ", 1)),
        None => full.replacen('T', " ", 1),
    }
}

pub fn age(seconds: Option<f64>) -> String {
    match seconds {
        None => "—".into(),
        Some(s) if s < 120.0 => format!("{s:.1} s"),
        Some(s) if s < 7200.0 => format!("{:.1} min", s / 60.0),
        Some(s) => format!("{:.1} h", s / 3600.0),
    }
}

pub fn truncated(text: &str, limit: usize) -> &str {
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

/// A waiting figure: counted up to a cap (a day's backlog is not read on every page
/// view), so the cap reads "10000+".
pub fn capped_count(n: i64) -> String {
    if n >= WAITING_COUNT_CAP {
        format!("{WAITING_COUNT_CAP}+")
    } else {
        n.to_string()
    }
}

pub fn event_table(events: &[EventRecord]) -> Markup {
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
    fn markup_from_senders_is_escaped() {
        assert!(
            error("x", "<script>alert(1)</script>")
                .into_string()
                .contains("&lt;script&gt;")
        );
    }
}
