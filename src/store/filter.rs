//! Which events a list or a bulk replay reads, and a page of them.

use thiserror::Error;

use super::records::EventRecord;
use crate::domain::event::SourceName;
use crate::domain::lifecycle::EventStatus;
use crate::domain::time::Timestamp;

/// Which events an operator asks for. Every field narrows the set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    /// An event matches when one of its deliveries (to `destination`, when given) is
    /// in this status; `filtered` matches events with none.
    pub status: Option<EventStatus>,
    pub source: Option<String>,
    /// Events with a delivery to this destination.
    pub destination: Option<String>,
    /// Received at or after.
    pub since: Option<Timestamp>,
    /// Received before.
    pub until: Option<Timestamp>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("status must be queued, processing, retrying, delivered, dead_lettered or filtered")]
    Status,
    #[error("source must be 1-64 characters of A-Z a-z 0-9 _ - .")]
    Source,
    #[error("destination must be 1-64 characters of A-Z a-z 0-9 _ - .")]
    Destination,
    #[error("{0:?} is not an RFC 3339 time such as 2026-11-30T12:00:00Z")]
    Timestamp(String),
}

impl EventFilter {
    /// Builds a filter from text as an operator writes it (query string, CLI flags).
    pub fn parse(
        status: Option<&str>,
        source: Option<String>,
        destination: Option<String>,
        since: Option<&str>,
        until: Option<&str>,
    ) -> Result<Self, FilterError> {
        let status = status
            .map(|s| s.parse::<EventStatus>().map_err(|_| FilterError::Status))
            .transpose()?;
        // A name no source can have would match nothing: say so rather than answer empty.
        if let Some(source) = &source {
            SourceName::parse(source).map_err(|_| FilterError::Source)?;
        }
        if let Some(destination) = &destination {
            SourceName::parse(destination).map_err(|_| FilterError::Destination)?;
        }
        // Any RFC 3339 time; also the looser UTC forms people type
        // (`2026-11-30 12:00:00`), as earlier releases accepted them.
        let time = |text: &str| {
            Timestamp::parse_rfc3339(text)
                .or_else(|| {
                    humantime::parse_rfc3339_weak(text)
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| Timestamp(d.as_micros() as i64))
                })
                .ok_or_else(|| FilterError::Timestamp(text.to_owned()))
        };
        Ok(Self {
            status,
            source,
            destination,
            since: since.map(time).transpose()?,
            until: until.map(time).transpose()?,
        })
    }
}

#[derive(Debug)]
pub struct EventPage {
    /// Newest first.
    pub events: Vec<EventRecord>,
    /// Pass back as `before` for the next page; `None` on the last page.
    pub next_cursor: Option<i64>,
}

impl EventPage {
    /// A page from up to `limit + 1` rows read newest first: the extra row only says
    /// that there is another page.
    pub fn from_rows(mut events: Vec<EventRecord>, limit: usize) -> Self {
        let next_cursor = if events.len() > limit {
            events.truncate(limit);
            events.last().map(|e| e.seq)
        } else {
            None
        };
        Self {
            events,
            next_cursor,
        }
    }
}
