//! Opening the database a URL names.

use std::sync::Arc;

use super::errors::StoreError;
use super::options::OpenOptions;
use super::roles::Store;
use super::url::DatabaseUrl;
use super::{postgres, sqlite};

pub async fn open(url: &DatabaseUrl, options: OpenOptions) -> Result<Arc<dyn Store>, StoreError> {
    match url {
        DatabaseUrl::Sqlite { path } => Ok(Arc::new(
            sqlite::SqliteStore::open(path.clone(), options).await?,
        )),
        DatabaseUrl::Postgres { url } => {
            Ok(Arc::new(postgres::PostgresStore::open(url, options).await?))
        }
    }
}
