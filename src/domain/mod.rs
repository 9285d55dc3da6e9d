//! Plain types and pure logic: no I/O lives here.

pub mod alert;
pub(crate) mod body_reads;
pub mod event;
pub(crate) mod json_text;
pub mod lifecycle;
pub(crate) mod message;
pub(crate) mod outcomes;
pub mod protection;
pub(crate) mod retry;
pub(crate) mod routing;
pub(crate) mod scheme;
pub(crate) mod signing;
pub(crate) mod stored_headers;
pub(crate) mod template;
pub mod time;
pub(crate) mod waiting;
