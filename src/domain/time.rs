//! Timestamps: microseconds since the Unix epoch inside, RFC 3339 UTC outside.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self(since_epoch.as_micros() as i64)
    }

    pub fn plus(self, duration: Duration) -> Self {
        Self(self.0.saturating_add(duration.as_micros() as i64))
    }

    /// Time from `self` until `later`, zero if `later` is not later.
    pub fn until(self, later: Timestamp) -> Duration {
        Duration::from_micros(later.0.saturating_sub(self.0).max(0) as u64)
    }

    /// Any RFC 3339 time (`Z` or an offset, any precision), e.g. an operator's filter.
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        let time =
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .ok()?;
        i64::try_from(time.unix_timestamp_nanos() / 1000)
            .ok()
            .map(Self)
    }

    /// RFC 3339 in UTC with millisecond precision, e.g. `2026-11-30T13:17:21.123Z`.
    pub fn to_rfc3339(self) -> String {
        let time = UNIX_EPOCH + Duration::from_micros(self.0.max(0) as u64);
        humantime::format_rfc3339_millis(time).to_string()
    }
}

/// Milliseconds with microsecond precision, for logs.
pub fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_as_utc_with_z() {
        assert_eq!(
            Timestamp(1_700_000_000_123_456).to_rfc3339(),
            "2023-11-14T22:13:20.123Z"
        );
    }

    #[test]
    fn parses_every_rfc3339_form() {
        let utc = Timestamp::parse_rfc3339("2023-11-14T22:13:20.123456Z").unwrap();
        assert_eq!(utc, Timestamp(1_700_000_000_123_456));
        assert_eq!(
            Timestamp::parse_rfc3339("2023-11-15T00:13:20.123456+02:00"),
            Some(utc)
        );
        assert_eq!(
            Timestamp::parse_rfc3339("1969-12-31T23:59:59Z"),
            Some(Timestamp(-1_000_000))
        );
        assert!(Timestamp::parse_rfc3339("0001-01-01T00:00:00Z").is_some());
        assert_eq!(Timestamp::parse_rfc3339("yesterday"), None);
        assert_eq!(Timestamp::parse_rfc3339("2023-11-14"), None);
    }
}
