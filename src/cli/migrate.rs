//! `hookrelay migrate`: brings the schema up to date, then exits.

use crate::config::Config;
use crate::store::{self, OpenOptions, StoreError};

pub async fn migrate(config: &Config) -> Result<(), StoreError> {
    let options = OpenOptions {
        migrate: true,
        runs_api: false,
        runs_worker: false,
        pool_size: 1,
    };
    let store = store::open(&config.database, options).await?;
    store.close().await;
    tracing::info!(database = %config.database, "Schema is up to date");
    Ok(())
}
