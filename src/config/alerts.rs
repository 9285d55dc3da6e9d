//! The `[alerts]` table: where alerts about destinations go, and when.

use std::time::Duration;

use serde::Deserialize;

use super::values::{Secret, TableError, parse_positive, parse_signing_secret, parse_url};
use crate::domain::alert::AlertRules;

/// What an alert's body looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertFormat {
    /// `{"text": "…"}`, as Slack's incoming webhooks (and Mattermost, Discord's
    /// `/slack` endpoints, Teams workflows) take it.
    Slack,
    /// A typed document `{type, destination, at, details}`, signed with Standard
    /// Webhooks headers when a signing secret is set.
    Json,
}

#[derive(Debug, Clone)]
pub struct AlertSettings {
    pub url: reqwest::Url,
    pub format: AlertFormat,
    pub signing_secret: Option<Secret>,
    /// Alert when a destination's oldest due delivery waits longer; `None`: never.
    pub lag: Option<Duration>,
    /// How long the alert receiver may take to answer.
    pub timeout: Duration,
    /// Dead letters of one destination within this window are one alert.
    pub digest: Duration,
    /// A recovery is announced once the destination has stayed up this long.
    pub settle: Duration,
    /// Where the dashboard is reached, to make links absolute (e.g.
    /// `https://hookrelay.example.com`); paths alone when unset.
    pub dashboard_url: Option<String>,
}

impl AlertSettings {
    pub fn rules(&self) -> AlertRules {
        AlertRules {
            digest: self.digest,
            settle: self.settle,
        }
    }
}

/// `[alerts]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertsTable {
    url: String,
    format: Option<String>,
    signing_secret: Option<String>,
    lag: Option<String>,
    timeout: Option<String>,
    digest: Option<String>,
    settle: Option<String>,
    dashboard_url: Option<String>,
}

/// Parses the `[alerts]` table of the config file.
pub fn parse_table(
    value: toml::Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AlertSettings, TableError> {
    let invalid = |field: &str, reason: String| TableError::new("alerts", field, reason);
    let raw: AlertsTable = value
        .try_into()
        .map_err(|e: toml::de::Error| invalid("table", e.message().to_owned()))?;
    let url = parse_url(&raw.url, env).map_err(|e| invalid("url", e))?;
    let format = match raw.format.as_deref().unwrap_or("slack") {
        "slack" => AlertFormat::Slack,
        "json" => AlertFormat::Json,
        other => {
            return Err(invalid(
                "format",
                format!("{other:?} is not \"slack\" or \"json\""),
            ));
        }
    };
    let signing_secret = raw
        .signing_secret
        .map(|text| parse_signing_secret(&text, env))
        .transpose()
        .map_err(|e| invalid("signing_secret", e))?;
    if signing_secret.is_some() && format == AlertFormat::Slack {
        return Err(invalid(
            "signing_secret",
            "signs `format = \"json\"` alerts; Slack does not check signatures".into(),
        ));
    }
    let lag = match raw.lag.as_deref().map(str::trim) {
        None => Some(DEFAULT_LAG),
        Some("" | "off") => None,
        Some(text) => Some(parse_positive(text).map_err(|e| invalid("lag", e))?),
    };
    let duration = |field: &str, text: Option<String>, default: Duration| {
        text.map_or(Ok(default), |t| {
            parse_positive(&t).map_err(|e| invalid(field, e))
        })
    };
    Ok(AlertSettings {
        url,
        format,
        signing_secret,
        lag,
        timeout: duration("timeout", raw.timeout, DEFAULT_TIMEOUT)?,
        digest: duration("digest", raw.digest, AlertRules::default().digest)?,
        settle: match raw.settle.as_deref().map(str::trim) {
            None => AlertRules::default().settle,
            Some("off" | "0s" | "0") => Duration::ZERO,
            Some(text) => parse_positive(text).map_err(|e| invalid("settle", e))?,
        },
        dashboard_url: raw
            .dashboard_url
            .map(|u| u.trim().trim_end_matches('/').to_owned())
            .filter(|u| !u.is_empty()),
    })
}

/// `lag` when not set: long enough that a retry schedule's normal waits do not page
/// anyone, short enough to hear of a stuck destination before its users do.
pub const DEFAULT_LAG: Duration = Duration::from_secs(300);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AlertSettings, TableError> {
        let table: toml::Table = text.parse().unwrap();
        parse_table(toml::Value::Table(table), &|name| {
            (name == "ALERT_SECRET").then(|| "whsec_c2VjcmV0LWtleS0xMjM0NTY3OA==".to_owned())
        })
    }

    #[test]
    fn defaults_are_slack_five_minutes_lag_and_a_one_minute_digest() {
        let settings = parse("url = \"https://hooks.slack.com/services/T/B/X\"").unwrap();
        assert_eq!(settings.format, AlertFormat::Slack);
        assert_eq!(settings.lag, Some(Duration::from_secs(300)));
        assert_eq!(settings.digest, Duration::from_secs(60));
        assert_eq!(settings.timeout, Duration::from_secs(10));
        assert!(settings.signing_secret.is_none());
        assert!(settings.dashboard_url.is_none());
    }

    #[test]
    fn json_alerts_take_a_signing_secret_from_the_environment() {
        let settings = parse(
            "url = \"http://alerts.internal/hook\"\nformat = \"json\"\n\
             signing_secret = \"${ALERT_SECRET}\"\nlag = \"30s\"\n\
             dashboard_url = \"https://relay.example.com/\"",
        )
        .unwrap();
        assert_eq!(settings.format, AlertFormat::Json);
        assert_eq!(
            settings.signing_secret.unwrap().bytes(),
            b"secret-key-12345678"
        );
        assert_eq!(settings.lag, Some(Duration::from_secs(30)));
        assert_eq!(
            settings.dashboard_url.as_deref(),
            Some("https://relay.example.com")
        );
    }

    #[test]
    fn mistakes_name_the_field() {
        let field = |text: &str| parse(text).unwrap_err().field;
        assert_eq!(field("url = \"ftp://x\""), "url");
        assert_eq!(field("url = \"http://x\"\nformat = \"email\""), "format");
        assert_eq!(field("url = \"http://x\"\nlag = \"soon\""), "lag");
        assert_eq!(
            field("url = \"http://x\"\nsigning_secret = \"whsec_c2VjcmV0\""),
            "signing_secret"
        );
        assert_eq!(field("url = \"http://x\"\nchannel = \"#ops\""), "table");
        assert_eq!(field("format = \"json\""), "table");
        assert_eq!(
            parse("url = \"http://x\"\nlag = \"off\"").unwrap().lag,
            None
        );
    }
}
