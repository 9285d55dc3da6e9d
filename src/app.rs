//! `Application::build` opens the store and binds the port; `run` serves until the
//! shutdown token is cancelled, then drains in-flight work. Tests use the same entry
//! point on port 0.

use std::net::SocketAddr;
use std::sync::Arc;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::ops::Operators;
use crate::ops::ingest::Ingest;
use crate::store::{self, OpenOptions, Store, StoreError};
use crate::worker::retention::RetentionPolicy;
use crate::worker::{Worker, WorkerSettings};

/// Which parts run in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// API and worker together.
    Serve,
    Api,
    Worker,
}

impl Role {
    fn has_api(self) -> bool {
        matches!(self, Role::Serve | Role::Api)
    }
    fn has_worker(self) -> bool {
        matches!(self, Role::Serve | Role::Worker)
    }
    pub fn name(self) -> &'static str {
        match self {
            Role::Serve => "serve",
            Role::Api => "api",
            Role::Worker => "worker",
        }
    }
}

#[derive(Debug, Error)]
pub enum AppError {
    #[error("cannot open database {database}")]
    Store {
        database: String,
        #[source]
        source: StoreError,
    },
    #[error("cannot build the HTTP client for deliveries")]
    Client(#[source] reqwest::Error),
    #[error("cannot listen on {address}")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
}

pub struct Application {
    role: Role,
    config: Config,
    store: Arc<dyn Store>,
    listener: Option<TcpListener>,
    /// This process's counters, recorded by the API and the worker.
    metrics: Arc<Metrics>,
    delivery_client: reqwest::Client,
}

impl Application {
    pub async fn build(config: Config, role: Role) -> Result<Self, AppError> {
        let options = OpenOptions {
            migrate: config.migrate_on_start,
            runs_api: role.has_api(),
            runs_worker: role.has_worker(),
            pool_size: config.pool_size,
        };
        let store = store::open(&config.database, options)
            .await
            .map_err(|source| AppError::Store {
                database: config.database.to_string(),
                source,
            })?;
        let delivery_client = crate::worker::publish::http::client(config.worker_concurrency)
            .map_err(AppError::Client)?;
        // The API's address; a worker alone listens only where it is told to.
        let address = if role.has_api() {
            Some(&config.listen)
        } else {
            config.worker_listen.as_ref()
        };
        let listener = match address {
            Some(address) => {
                Some(
                    TcpListener::bind(address)
                        .await
                        .map_err(|source| AppError::Bind {
                            address: address.clone(),
                            source,
                        })?,
                )
            }
            None => None,
        };
        Ok(Self {
            role,
            config,
            store,
            listener,
            metrics: Arc::new(Metrics::new()),
            delivery_client,
        })
    }

    /// Reports the trace export's counters in `/metrics`.
    pub fn count_traces(self, counters: Arc<crate::telemetry::TraceCounters>) -> Self {
        self.metrics.count_traces(counters);
        self
    }

    /// The bound address, when this process serves HTTP.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AppError> {
        let dashboard = self
            .local_addr()
            .filter(|_| self.role.has_api())
            .map(|address| {
                // A wildcard address is reached on this machine through loopback.
                if address.ip().is_unspecified() {
                    format!("http://127.0.0.1:{}/ui", address.port())
                } else {
                    format!("http://{address}/ui")
                }
            })
            .unwrap_or_default();
        tracing::info!(
            role = self.role.name(),
            database = %self.config.database,
            listen = self.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            dashboard,
            config = self
                .config
                .config_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            "hookrelay started"
        );
        let worker = self.role.has_worker().then(|| {
            let worker = Worker::new(
                self.store.clone(),
                WorkerSettings {
                    retry: self.config.retry,
                    lease: self.config.lease,
                    concurrency: self.config.worker_concurrency,
                    poll_interval: self.config.poll_interval,
                    destinations: self.config.destinations.clone(),
                    retention: RetentionPolicy {
                        delivered: self.config.retention,
                        dead_lettered: self.config.dead_retention,
                        interval: self.config.prune_interval,
                    },
                    metrics: self.metrics.clone(),
                    alerts: self.config.alerts.clone(),
                    tracing: self.config.telemetry.as_ref().map(|t| t.sampling),
                },
                self.delivery_client.clone(),
            );
            tokio::spawn(worker.run(shutdown.clone()))
        });

        match self.listener {
            Some(listener) => {
                let state = AppState::new(http::Shared {
                    ingest: Ingest::new(
                        self.store.clone(),
                        self.config.sources.clone(),
                        self.config.destinations.clone(),
                        self.config.retry.max_attempts,
                    ),
                    tracing: self.config.telemetry.as_ref().map(|t| t.sampling),
                    max_body: self.config.max_body,
                    body_read_timeout: self.config.body_read_timeout,
                    admin_token: self.config.admin_token.clone(),
                    write_health: Arc::default(),
                    operators: Arc::new(
                        Operators::new(
                            self.store.clone(),
                            self.config.sources.clone(),
                            self.config.destinations.clone(),
                            self.config.retry.max_attempts,
                        )
                        .with_trace_link(self.config.trace_link.clone()),
                    ),
                    metrics: self.metrics.clone(),
                    request_timeout: self.config.request_timeout,
                });
                let router = if self.role.has_api() {
                    http::router(state)
                } else {
                    http::worker_router(state)
                };
                if self.config.admin_token.is_none() {
                    tracing::warn!(
                        "HOOKRELAY_ADMIN_TOKEN is not set: /events, /metrics and /ui answer \
                         clients on this machine only"
                    );
                }
                let limits = http::ConnectionLimits {
                    header_read_timeout: self.config.header_read_timeout,
                    shutdown_grace: self.config.shutdown_grace,
                };
                http::serve(listener, router, limits, shutdown.clone()).await;
            }
            None => shutdown.cancelled().await,
        }
        // The server may have failed on its own; stop the worker too.
        shutdown.cancel();
        if let Some(worker) = worker {
            let _ = worker.await;
        }
        self.store.close().await;
        tracing::info!("hookrelay stopped");
        Ok(())
    }
}
