//! Plain types and pure logic: no I/O lives here.

pub mod alert;
pub mod body_reads;
pub mod event;
pub mod json_text;
pub mod lifecycle;
pub mod outcomes;
pub mod protection;
pub mod retry;
pub mod routing;
pub mod scheme;
pub mod signing;
pub mod stored_headers;
pub mod time;
pub mod waiting;
