//! Reading a row's columns without panicking.

use tokio_postgres::Row;

use crate::store::StoreError;

/// Reads a column; a type that does not match the schema is a fault of ours
/// (`Internal`), never a panic.
pub trait Column {
    fn col<'a, T: tokio_postgres::types::FromSql<'a>>(
        &'a self,
        index: usize,
    ) -> Result<T, StoreError>;
}

impl Column for Row {
    fn col<'a, T: tokio_postgres::types::FromSql<'a>>(
        &'a self,
        index: usize,
    ) -> Result<T, StoreError> {
        self.try_get(index)
            .map_err(|e| StoreError::Internal(Box::new(e)))
    }
}
