//! What an attempt got back, and how a broker says no.

use async_trait::async_trait;

use crate::domain::lifecycle::AttemptOutcome;
use crate::domain::message::Outbound;
use crate::domain::protection::Fault;
use crate::store::ClaimedDelivery;

/// What an attempt got back.
#[derive(Debug)]
pub struct Delivery {
    pub outcome: AttemptOutcome,
    /// Whose failure it was: the destination's counts toward its breaker.
    pub fault: Fault,
    /// The HTTP status, for HTTP destinations.
    pub status_code: Option<u16>,
    /// The start of the HTTP answer, or the broker's acknowledgement (partition and
    /// offset, sequence, message id, entry id).
    pub response_body: Option<String>,
}

impl Delivery {
    pub fn failed(error: String, fault: Fault) -> Self {
        Self {
            outcome: AttemptOutcome::Failed {
                error,
                retry_after: None,
            },
            fault,
            status_code: None,
            response_body: None,
        }
    }

    pub(super) fn acknowledged(ack: String) -> Self {
        Self {
            outcome: AttemptOutcome::Delivered,
            fault: Fault::None,
            status_code: None,
            response_body: Some(ack),
        }
    }
}

/// Why a broker did not take a message.
#[derive(Debug)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub error: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// Unreachable, timed out, throttled: the destination's failure (its breaker).
    Unavailable,
    /// An unknown topic, queue, exchange or stream, an unroutable message, a denied
    /// permission: the destination's configuration is wrong for this event. Retried
    /// on the usual schedule (the operator may fix it), dead-lettered and alerted
    /// when the attempts run out.
    Misconfigured,
    /// Too large, or otherwise refused for what it is: retrying cannot help.
    Rejected,
}

impl Refusal {
    pub fn unavailable(error: impl Into<String>) -> Self {
        Self {
            kind: RefusalKind::Unavailable,
            error: error.into(),
        }
    }

    pub fn misconfigured(error: impl Into<String>) -> Self {
        Self {
            kind: RefusalKind::Misconfigured,
            error: format!("destination misconfigured: {}", error.into()),
        }
    }

    pub fn rejected(error: impl Into<String>) -> Self {
        Self {
            kind: RefusalKind::Rejected,
            error: error.into(),
        }
    }

    pub(super) fn into_delivery(self) -> Delivery {
        match self.kind {
            RefusalKind::Unavailable => Delivery::failed(self.error, Fault::Destination),
            RefusalKind::Misconfigured => Delivery::failed(self.error, Fault::Event),
            RefusalKind::Rejected => Delivery {
                outcome: AttemptOutcome::FailedPermanently { error: self.error },
                fault: Fault::Event,
                status_code: None,
                response_body: None,
            },
        }
    }
}

/// One broker destination's publisher: a connection (or client) of its own, kept
/// between attempts and made again after it broke.
#[async_trait]
pub trait Broker: Send + Sync {
    /// Publishes and waits for the broker's acknowledgement; `Ok` describes it.
    async fn publish(&self, message: &Outbound, event: &ClaimedDelivery)
    -> Result<String, Refusal>;
}
