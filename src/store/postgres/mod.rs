//! The scale-out backend: any number of API and worker processes on one PostgreSQL
//! database.
//!
//! Claims take due rows with `FOR UPDATE SKIP LOCKED` in short transactions, so
//! workers never wait on each other; leases and attempt-number fencing are the same as
//! on SQLite. Commits are durable (`synchronous_commit=on`, set on every connection).
//! API processes announce new work with `NOTIFY` (coalesced to at most one per
//! millisecond); workers `LISTEN` on a connection of their own, with polling as the
//! fallback. Broken connections are replaced by the pool, so the service recovers by
//! itself when PostgreSQL comes back.

mod alerts;
mod claims;
mod column;
mod events;
mod figures;
mod flows;
mod outcomes;
mod replays;

use std::future::poll_fn;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::CancellationToken;

use column::Column as _;

use super::group::Grouped;
use super::{
    AlertOutbox, AlertOutcome, AlertRecord, AttemptBudget, AttemptRecord, Claim, ClaimRequest,
    DeliveryId, DeliveryQueue, DestinationSample, DestinationStats, EventFilter, EventLog,
    EventPage, EventRecord, FinishedAttempt, Housekeeping, InsertOutcome, MinuteCount, MinuteRow,
    NewDelivery, NewEvent, OpenOptions, OperatorView, QueueGauges, REPLAY_BATCH, Recorded,
    ReplayOutcome, StoreError, replay_in_batches,
};
use crate::domain::event::EventId;
use crate::domain::time::Timestamp;

const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/postgres/0001_events.sql"),
    include_str!("../../../migrations/postgres/0002_dead_letter_index.sql"),
    include_str!("../../../migrations/postgres/0003_replay_round.sql"),
    include_str!("../../../migrations/postgres/0004_forward.sql"),
    include_str!("../../../migrations/postgres/0005_status_check.sql"),
    include_str!("../../../migrations/postgres/0006_deliveries.sql"),
    include_str!("../../../migrations/postgres/0007_protection.sql"),
    include_str!("../../../migrations/postgres/0008_alerts.sql"),
    include_str!("../../../migrations/postgres/0009_one_leased_index.sql"),
    include_str!("../../../migrations/postgres/0010_retrying_index.sql"),
    include_str!("../../../migrations/postgres/0011_trace_context.sql"),
];
/// Any number, as long as every hookrelay process uses the same one.
const MIGRATION_LOCK: i64 = 0x686f_6f6b_7265_6c61;
const CHANNEL: &str = "hookrelay_work";
/// The most webhooks one insert statement holds.
const INSERT_GROUP: usize = 256;
/// A statement that cannot finish in this time fails (503) instead of hanging.
const STATEMENT_TIMEOUT_MS: u32 = 5_000;
const RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// NOTIFYs are coalesced over this window.
const NOTIFY_WINDOW: Duration = Duration::from_millis(1);

impl From<tokio_postgres::Error> for StoreError {
    /// Connection trouble, timeouts, shutdowns, lock and resource limits are
    /// "unavailable": a retry may succeed. An error the server reports about the
    /// statement itself (syntax, constraint, type) is a fault of ours.
    fn from(error: tokio_postgres::Error) -> Self {
        let unavailable = match error.code() {
            None => true,
            Some(state) => {
                let class = &state.code()[..2];
                // 08 connection, 25006 read-only transaction, 40 rollback (deadlock,
                // serialization), 53 resources, 55P03 lock not available, 57
                // operator intervention (statement timeout, shutdown), 58 system.
                matches!(class, "08" | "40" | "53" | "57" | "58")
                    || matches!(state.code(), "25006" | "55P03" | "55006")
            }
        };
        if unavailable {
            StoreError::Unavailable(Box::new(error))
        } else {
            StoreError::Internal(Box::new(error))
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        StoreError::Unavailable(Box::new(error))
    }
}

pub struct PostgresStore {
    pool: Pool,
    sweep: super::SweepClock,
    /// Inserts of webhooks, committed in groups.
    inserts: Grouped<NewEvent, InsertOutcome>,
    work_signal: Arc<Notify>,
    /// Wakes the task that sends NOTIFY to other processes.
    announce: Arc<Notify>,
    background: CancellationToken,
}

impl PostgresStore {
    pub async fn open(url: &str, options: OpenOptions) -> Result<Self, StoreError> {
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| StoreError::Unsupported(format!("invalid PostgreSQL URL: {e}")))?;
        config.options(format!(
            "-c synchronous_commit=on -c statement_timeout={STATEMENT_TIMEOUT_MS}"
        ));
        config.connect_timeout(Duration::from_secs(5));
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .wait_timeout(Some(Duration::from_secs(5)))
            .create_timeout(Some(Duration::from_secs(5)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Unsupported(e.to_string()))?;

        let client = pool.get().await?;
        if options.migrate {
            migrate(client).await?;
        } else {
            check_schema(&client).await?;
        }

        let background = CancellationToken::new();
        // Half the pool commits webhooks; the rest serves reads, claims and outcomes.
        let inserts = {
            let pool = pool.clone();
            Grouped::start(
                INSERT_GROUP,
                options.pool_size / 2,
                background.clone(),
                move |events: Vec<NewEvent>| {
                    let pool = pool.clone();
                    async move { events::insert_events(&pool.get().await?, &events).await }
                },
            )
        };
        let store = Self {
            pool,
            sweep: super::SweepClock::default(),
            inserts,
            work_signal: Arc::new(Notify::new()),
            announce: Arc::new(Notify::new()),
            background,
        };
        if options.runs_api {
            tokio::spawn(announce_loop(
                store.pool.clone(),
                store.announce.clone(),
                store.background.clone(),
            ));
        }
        if options.runs_worker {
            tokio::spawn(listen_loop(
                config,
                store.work_signal.clone(),
                store.background.clone(),
            ));
        }
        Ok(store)
    }
}

async fn migrate(mut client: deadpool_postgres::Object) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    // Serialises processes that start together on an empty database.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS hookrelay_migrations (
             version INTEGER PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .await?;
    let applied: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM hookrelay_migrations",
            &[],
        )
        .await?
        .col(0)?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied.max(0) as usize) {
        tx.batch_execute(sql).await?;
        let version = index as i32 + 1;
        tx.execute(
            "INSERT INTO hookrelay_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await?;
        tracing::info!(version, "Applied schema migration");
    }
    tx.commit().await?;
    Ok(())
}

async fn check_schema(client: &deadpool_postgres::Object) -> Result<(), StoreError> {
    let applied: i32 = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM hookrelay_migrations",
            &[],
        )
        .await
        .map_err(|_| StoreError::Schema("the schema is missing; run `hookrelay migrate`".into()))?
        .col(0)?;
    if (applied as usize) < MIGRATIONS.len() {
        return Err(StoreError::Schema(format!(
            "schema version {applied} is older than {}; run `hookrelay migrate`",
            MIGRATIONS.len()
        )));
    }
    Ok(())
}

/// Tells workers in other processes that new events are waiting.
async fn announce_loop(pool: Pool, announce: Arc<Notify>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = announce.notified() => {}
        }
        // Many inserts in this window share one NOTIFY.
        tokio::time::sleep(NOTIFY_WINDOW).await;
        let sent = async {
            let client = pool.get().await?;
            client
                .execute("SELECT pg_notify($1, '')", &[&CHANNEL])
                .await?;
            Ok::<_, StoreError>(())
        };
        if let Err(error) = sent.await {
            tracing::debug!(
                error = &error as &dyn std::error::Error,
                "NOTIFY failed; workers will poll"
            );
        }
    }
}

/// Holds a connection that LISTENs for new work, reconnecting whenever it drops.
async fn listen_loop(config: tokio_postgres::Config, signal: Arc<Notify>, stop: CancellationToken) {
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let wake = signal.clone();
                let mut messages = tokio::spawn(async move {
                    while let Some(message) = poll_fn(|cx| connection.poll_message(cx)).await {
                        match message {
                            Ok(AsyncMessage::Notification(_)) => wake.notify_one(),
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                });
                match client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    Ok(()) => {
                        // Anything announced while we were not listening.
                        signal.notify_one();
                        tokio::select! {
                            _ = &mut messages => {
                                tracing::warn!("Lost the LISTEN connection; reconnecting");
                            }
                            () = stop.cancelled() => return,
                        }
                    }
                    Err(error) => {
                        tracing::warn!(error = &error as &dyn std::error::Error, "LISTEN failed");
                        messages.abort();
                    }
                }
            }
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "Cannot connect to listen for new events"
                );
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(RECONNECT_DELAY) => {}
        }
    }
}

#[async_trait]
impl EventLog for PostgresStore {
    async fn insert_event(&self, event: NewEvent) -> Result<InsertOutcome, StoreError> {
        let outcome = self.inserts.submit(event).await?;
        if matches!(outcome, InsertOutcome::Accepted(_)) {
            self.work_signal.notify_one();
            self.announce.notify_one();
        }
        Ok(outcome)
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        figures::probe_write(&client).await
    }
}

#[async_trait]
impl DeliveryQueue for PostgresStore {
    async fn claim(&self, request: ClaimRequest) -> Result<Claim, StoreError> {
        let mut client = self.pool.get().await?;
        claims::claim(&mut client, &request, self.sweep.due()).await
    }

    async fn renew_leases(
        &self,
        attempts: Vec<(DeliveryId, u32)>,
        lease: Duration,
    ) -> Result<usize, StoreError> {
        let client = self.pool.get().await?;
        claims::renew_leases(&client, &attempts, lease).await
    }

    async fn finish_attempts(
        &self,
        finished: Vec<FinishedAttempt>,
    ) -> Result<Vec<Recorded>, StoreError> {
        let mut client = self.pool.get().await?;
        outcomes::finish_attempts(&mut client, &finished).await
    }

    async fn release(&self, delivery: DeliveryId, attempt: u32) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        claims::release(&client, delivery, attempt).await
    }

    fn work_signal(&self) -> Arc<Notify> {
        self.work_signal.clone()
    }
}

#[async_trait]
impl OperatorView for PostgresStore {
    async fn get_event(&self, id: &EventId) -> Result<Option<EventRecord>, StoreError> {
        let client = self.pool.get().await?;
        events::get_event(&client, id).await
    }

    async fn find_by_key(
        &self,
        source: &str,
        key: &str,
    ) -> Result<Option<EventRecord>, StoreError> {
        let client = self.pool.get().await?;
        events::find_by_key(&client, source, key).await
    }

    async fn add_deliveries(
        &self,
        id: &EventId,
        deliveries: Vec<NewDelivery>,
    ) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        let added = events::add_deliveries(&client, id, &deliveries).await?;
        if added {
            self.work_signal.notify_one();
            self.announce.notify_one();
        }
        Ok(added)
    }

    async fn list_attempts(&self, id: &EventId) -> Result<Option<Vec<AttemptRecord>>, StoreError> {
        let client = self.pool.get().await?;
        events::list_attempts(&client, id).await
    }

    async fn set_paused(&self, destination: &str, paused: bool) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        let changed = flows::set_paused(&client, destination, paused).await?;
        if changed && !paused {
            self.work_signal.notify_one();
            self.announce.notify_one();
        }
        Ok(changed)
    }

    async fn list_events(
        &self,
        filter: &EventFilter,
        limit: usize,
        before: Option<i64>,
        bodies: bool,
    ) -> Result<EventPage, StoreError> {
        let client = self.pool.get().await?;
        events::list_events(&client, filter, limit, before, bodies).await
    }

    async fn replay(
        &self,
        id: &EventId,
        destination: Option<&str>,
        budget: &AttemptBudget,
    ) -> Result<ReplayOutcome, StoreError> {
        let client = self.pool.get().await?;
        let outcome = replays::replay(&client, id, destination, budget).await?;
        if matches!(outcome, ReplayOutcome::Queued(_)) {
            self.work_signal.notify_one();
            self.announce.notify_one();
        }
        Ok(outcome)
    }

    async fn replay_matching(
        &self,
        filter: &EventFilter,
        budget: &AttemptBudget,
    ) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        let upto_seq = events::last_seq(&client).await?;
        // Each batch commits on its own, so no transaction holds millions of rows.
        replay_in_batches(|after_seq| {
            let client = &client;
            async move {
                let batch = replays::replay_matching(
                    client,
                    filter,
                    budget,
                    after_seq,
                    upto_seq,
                    REPLAY_BATCH,
                )
                .await?;
                if batch.replayed > 0 {
                    self.work_signal.notify_one();
                    self.announce.notify_one();
                }
                Ok(batch)
            }
        })
        .await
    }

    async fn gauges(&self) -> Result<QueueGauges, StoreError> {
        let client = self.pool.get().await?;
        figures::gauges(&client).await
    }

    async fn destination_minutes(&self, since: Timestamp) -> Result<Vec<MinuteRow>, StoreError> {
        let client = self.pool.get().await?;
        alerts::destination_minutes(&client, since).await
    }

    async fn destination_stats(&self) -> Result<Vec<DestinationStats>, StoreError> {
        let client = self.pool.get().await?;
        figures::destination_stats(&client).await
    }

    async fn count_delivered(&self, cap: u64) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        figures::count_delivered(&client, cap).await
    }
}

#[async_trait]
impl AlertOutbox for PostgresStore {
    async fn claim_alerts(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<AlertRecord>, StoreError> {
        let client = self.pool.get().await?;
        alerts::claim_alerts(&client, limit, lease).await
    }

    async fn finish_alert(
        &self,
        id: i64,
        attempts: u32,
        outcome: AlertOutcome,
    ) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        alerts::finish_alert(&client, id, attempts, &outcome).await
    }

    async fn record_samples(
        &self,
        samples: Vec<DestinationSample>,
        counts: Vec<MinuteCount>,
        now: Timestamp,
        settle: Duration,
    ) -> Result<usize, StoreError> {
        let mut client = self.pool.get().await?;
        alerts::record_samples(&mut client, &samples, &counts, now, settle).await
    }
}

#[async_trait]
impl Housekeeping for PostgresStore {
    async fn prune(
        &self,
        delivered_before: Timestamp,
        dead_before: Option<Timestamp>,
        batch: usize,
    ) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        figures::prune(&client, delivered_before, dead_before, batch).await
    }

    async fn prune_monitoring(
        &self,
        minutes_before: Timestamp,
        alerts_before: Timestamp,
    ) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        alerts::prune_monitoring(&client, minutes_before, alerts_before).await
    }

    async fn close(&self) {
        self.background.cancel();
        self.pool.close();
    }
}
