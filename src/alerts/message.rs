//! What an alert says: a Slack `text` a person reads at night, or a typed JSON
//! document a program reads. Pure functions of the stored alert.

use std::time::Duration;

use serde::Serialize;

use crate::domain::alert::{AlertDetails, AlertKind};
use crate::domain::time::Timestamp;
use crate::store::AlertRecord;

/// The alert's details, with a digest's figures (kept in columns, as later dead
/// letters add to them) and the dashboard path filled in.
pub fn details(alert: &AlertRecord, digest: Duration) -> AlertDetails {
    let mut details = AlertDetails::from_json(&alert.details);
    if alert.kind == AlertKind::DeadLettered {
        details.count = Some(alert.count);
        details.event_id = alert.event_id.clone();
        if let Some(start) = alert.episode {
            details.window_start = Some(start.to_rfc3339());
            details.window_end = Some(start.plus(digest).to_rfc3339());
        }
    }
    details
}

/// The dashboard page a person should open for this alert.
pub fn dashboard_path(alert: &AlertRecord) -> String {
    // Destination names are A-Z a-z 0-9 _ - . only: nothing to escape in a path.
    let name = &alert.destination;
    match (alert.kind, &alert.event_id) {
        (AlertKind::DeadLettered, Some(id)) if alert.count == 1 => format!("/ui/events/{id}"),
        (AlertKind::DeadLettered, _) => format!("/ui?status=dead_lettered&destination={name}"),
        _ => format!("/ui/destinations/{name}"),
    }
}

#[derive(Serialize)]
struct JsonAlert<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    destination: &'a str,
    at: String,
    details: JsonDetails,
}

#[derive(Serialize)]
struct JsonDetails {
    #[serde(flatten)]
    details: AlertDetails,
    dashboard: String,
}

/// `{type, destination, at, details}`.
pub fn json_body(alert: &AlertRecord, digest: Duration, dashboard_url: Option<&str>) -> String {
    let body = JsonAlert {
        kind: alert.kind.as_str(),
        destination: &alert.destination,
        at: alert.created_at.to_rfc3339(),
        details: JsonDetails {
            details: details(alert, digest),
            dashboard: link(dashboard_url, &dashboard_path(alert)),
        },
    };
    serde_json::to_string(&body).unwrap_or_else(|_| "{}".to_owned())
}

/// `{"text": "…"}` for Slack's incoming webhooks.
pub fn slack_body(
    alert: &AlertRecord,
    digest: Duration,
    lag: Option<Duration>,
    dashboard_url: Option<&str>,
) -> String {
    serde_json::json!({ "text": slack_text(alert, digest, lag, dashboard_url) }).to_string()
}

pub fn slack_text(
    alert: &AlertRecord,
    digest: Duration,
    lag: Option<Duration>,
    dashboard_url: Option<&str>,
) -> String {
    let details = details(alert, digest);
    let name = &alert.destination;
    let since = details.since.as_deref().and_then(Timestamp::parse_rfc3339);
    let since_text = since.map_or_else(|| "a moment ago".to_owned(), clock);
    let waiting = match details.waiting {
        Some(1) => "1 delivery waits".to_owned(),
        Some(n) => format!("{n} deliveries wait"),
        None => "deliveries wait".to_owned(),
    };
    let path = dashboard_path(alert);
    let dashboard = match dashboard_url {
        Some(base) => format!("<{base}{path}|Open the dashboard>"),
        None => format!("Dashboard: {path}"),
    };
    let lead = match alert.kind {
        AlertKind::Failing => {
            let failures = details
                .failures
                .map_or_else(String::new, |n| format!(" after {n} failures in a row"));
            let last = details
                .last_error
                .as_deref()
                .map_or_else(String::new, |e| format!(" (last: {})", clip(e, 200)));
            format!(
                ":rotating_light: Destination *{name}* is failing since {since_text}{failures}{last}. \
                 Its breaker is open: {waiting}, none is dead-lettered for it, and hookrelay \
                 probes it and resumes on its own."
            )
        }
        AlertKind::Recovered => {
            let down = since.map_or_else(String::new, |s| {
                format!(
                    " after {} down",
                    human(s.until(alert.created_at).max(Duration::from_secs(1)))
                )
            });
            format!(
                ":white_check_mark: Destination *{name}* recovered{down} (failing since \
                 {since_text}). Its breaker is closed; {waiting} and drain at its rate."
            )
        }
        AlertKind::DeadLettered => {
            let count = alert.count;
            let what = if count == 1 {
                "1 delivery was dead-lettered".to_owned()
            } else {
                format!("{count} deliveries were dead-lettered")
            };
            let window = alert.episode.map_or_else(String::new, |start| {
                format!(
                    " between {} and {}",
                    clock(start),
                    clock(start.plus(digest))
                )
            });
            let latest = alert
                .event_id
                .as_deref()
                .map_or_else(String::new, |id| format!(" The latest is event `{id}`."));
            format!(
                ":x: Destination *{name}*: {what}{window}.{latest} They are kept and can be \
                 replayed."
            )
        }
        AlertKind::Lagging => {
            let beyond = lag.map_or_else(String::new, |l| format!(", longer than {}", human(l)));
            format!(
                ":hourglass_flowing_sand: Destination *{name}* is lagging: its oldest due \
                 delivery has waited since {since_text}{beyond}. {waiting}."
            )
        }
        AlertKind::CaughtUp => format!(
            ":white_check_mark: Destination *{name}* caught up: the lag that began at \
             {since_text} is over; {waiting}."
        ),
    };
    format!("{lead} {dashboard}")
}

fn link(base: Option<&str>, path: &str) -> String {
    format!("{}{path}", base.unwrap_or(""))
}

/// A time as a person on call reads it: `2026-12-01 18:02:11 UTC`.
fn clock(at: Timestamp) -> String {
    let text = at.to_rfc3339();
    format!("{} UTC", text[..19].replace('T', " "))
}

/// A duration rounded to whole seconds: `12m 3s`.
fn human(duration: Duration) -> String {
    humantime::format_duration(Duration::from_secs(duration.as_secs())).to_string()
}

fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: Timestamp = Timestamp(1_764_612_131_000_000); // 2025-12-01T18:02:11Z

    fn alert(kind: AlertKind, details: AlertDetails) -> AlertRecord {
        AlertRecord {
            id: 7,
            kind,
            destination: "billing".into(),
            created_at: AT.plus(Duration::from_secs(723)),
            episode: None,
            count: 0,
            event_id: None,
            details: details.to_json(),
            attempts: 1,
            sent_at: None,
            last_error: None,
        }
    }

    #[test]
    fn failing_says_who_since_when_why_and_what_waits() {
        let failing = alert(
            AlertKind::Failing,
            AlertDetails {
                since: Some(AT.to_rfc3339()),
                failures: Some(5),
                last_error: Some("connection failed: connection refused".into()),
                waiting: Some(42),
                ..AlertDetails::default()
            },
        );
        let text = slack_text(&failing, Duration::from_secs(60), None, None);
        assert_eq!(
            text,
            ":rotating_light: Destination *billing* is failing since 2025-12-01 18:02:11 UTC \
             after 5 failures in a row (last: connection failed: connection refused). Its \
             breaker is open: 42 deliveries wait, none is dead-lettered for it, and hookrelay \
             probes it and resumes on its own. Dashboard: /ui/destinations/billing"
        );
        let linked = slack_text(
            &failing,
            Duration::from_secs(60),
            None,
            Some("https://relay.example.com"),
        );
        assert!(
            linked.ends_with(
                "<https://relay.example.com/ui/destinations/billing|Open the dashboard>"
            ),
            "{linked}"
        );
    }

    #[test]
    fn recovered_says_how_long_it_was_down() {
        let recovered = alert(
            AlertKind::Recovered,
            AlertDetails {
                since: Some(AT.to_rfc3339()),
                waiting: Some(1),
                ..AlertDetails::default()
            },
        );
        let text = slack_text(&recovered, Duration::from_secs(60), None, None);
        assert!(
            text.contains("*billing* recovered after 12m 3s down"),
            "{text}"
        );
        assert!(text.contains("1 delivery waits"), "{text}");
    }

    #[test]
    fn a_digest_carries_its_count_window_and_latest_event() {
        let mut digest = alert(AlertKind::DeadLettered, AlertDetails::default());
        digest.count = 3;
        digest.episode = Some(Timestamp(1_764_612_120_000_000));
        digest.event_id = Some("evt_01".into());
        let text = slack_text(&digest, Duration::from_secs(60), None, None);
        assert!(
            text.contains("3 deliveries were dead-lettered between 2025-12-01 18:02:00 UTC and 2025-12-01 18:03:00 UTC"),
            "{text}"
        );
        assert!(text.contains("`evt_01`"), "{text}");
        assert!(
            text.ends_with("/ui?status=dead_lettered&destination=billing"),
            "{text}"
        );

        let json: serde_json::Value =
            serde_json::from_str(&json_body(&digest, Duration::from_secs(60), None)).unwrap();
        assert_eq!(json["type"], "destination.dead_lettered");
        assert_eq!(json["destination"], "billing");
        assert_eq!(json["at"], "2025-12-01T18:14:14.000Z");
        assert_eq!(json["details"]["count"], 3);
        assert_eq!(json["details"]["event_id"], "evt_01");
        assert_eq!(json["details"]["window_start"], "2025-12-01T18:02:00.000Z");
        assert_eq!(json["details"]["window_end"], "2025-12-01T18:03:00.000Z");
        assert_eq!(
            json["details"]["dashboard"],
            "/ui?status=dead_lettered&destination=billing"
        );

        digest.count = 1;
        assert_eq!(dashboard_path(&digest), "/ui/events/evt_01");
    }

    #[test]
    fn lag_names_the_threshold() {
        let lagging = alert(
            AlertKind::Lagging,
            AlertDetails {
                since: Some(AT.to_rfc3339()),
                waiting: Some(1200),
                ..AlertDetails::default()
            },
        );
        let text = slack_text(
            &lagging,
            Duration::from_secs(60),
            Some(Duration::from_secs(300)),
            None,
        );
        assert!(
            text.contains("longer than 5m. 1200 deliveries wait."),
            "{text}"
        );
        let body: serde_json::Value =
            serde_json::from_str(&slack_body(&lagging, Duration::from_secs(60), None, None))
                .unwrap();
        assert_eq!(
            body["text"],
            slack_text(&lagging, Duration::from_secs(60), None, None)
        );
    }
}
