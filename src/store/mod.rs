//! Durable storage of events and attempts behind one `Store` trait, one
//! implementation per backend (`sqlite/`, `postgres/`) that owns only SQL.

mod batching;
mod claims;
mod errors;
mod filter;
pub(crate) mod group;
mod open;
mod options;
pub(crate) mod postgres;
mod records;
mod roles;
mod rows;
mod sql;
pub(crate) mod sqlite;
mod url;

pub use batching::{REPLAY_BATCH, ReplayBatch, SWEEP_INTERVAL, SweepClock, replay_in_batches};
pub use claims::{
    Claim, ClaimRequest, ClaimedDelivery, FinishedAttempt, ReclaimedDelivery, Recorded, Want,
};
pub use errors::StoreError;
pub use filter::{EventFilter, EventPage, FilterError};
pub use open::open;
pub use options::OpenOptions;
pub use records::{
    AlertOutcome, AlertRecord, AttemptBudget, AttemptRecord, DeliveryId, DeliveryRecord,
    EventRecord, InsertOutcome, NewDelivery, NewEvent, ReplayOutcome,
};
pub use roles::{AlertOutbox, DeliveryQueue, EventLog, Housekeeping, OperatorView, Store};
pub use rows::{
    DestinationRow, DestinationSample, DestinationStats, FLOW_COLUMNS, MinuteCount, MinuteRow,
    QueueGauges, WAITING_COUNT_CAP, flow_state, flow_values, minute_of,
};
pub use url::DatabaseUrl;
