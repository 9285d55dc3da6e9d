//! The worker: claims due events under a lease, runs attempts concurrently, records
//! each outcome, and stops cleanly.
//!
//! It sleeps until the store signals new work, the next retry or lease expiry is
//! due, or the poll interval passes, whichever comes first.

mod attempt;
mod attempt_span;
mod background;
mod lanes;
pub mod publish;
mod recorder;
pub mod retention;
mod rounds;
mod settings;
pub mod simulate;

pub use settings::WorkerSettings;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::background::Background;
use self::publish::Publishers;
use self::rounds::Rounds;
use crate::store::Store;

pub struct Worker {
    store: Arc<dyn Store>,
    settings: WorkerSettings,
    client: reqwest::Client,
}

impl Worker {
    /// `client` delivers to destinations ([`publish::http::client`]).
    pub fn new(store: Arc<dyn Store>, settings: WorkerSettings, client: reqwest::Client) -> Self {
        Self {
            store,
            settings,
            client,
        }
    }

    /// Starts the background tasks, claims until `shutdown`, waits for the attempts
    /// running, then stops the background tasks.
    pub async fn run(self, shutdown: CancellationToken) {
        let settings = Arc::new(self.settings);
        let background = Background::start(&self.store, &settings, &self.client, &shutdown);
        let rounds = Rounds {
            lanes: Arc::new(Rounds::lanes(&settings)),
            store: self.store,
            settings: settings.clone(),
            // One HTTP client (kept-alive connections to each destination are reused)
            // and one publisher per broker destination.
            publishers: Arc::new(Publishers::new(self.client)),
            attempts: TaskTracker::new(),
            shutdown,
        };
        tracing::info!(
            concurrency = settings.concurrency,
            "Worker started (each destination has this many slots of its own)"
        );
        rounds.run(&background).await;
        rounds.attempts.close();
        rounds.attempts.wait().await;
        background.stop().await;
        tracing::info!("Worker stopped");
    }
}
