//! The dashboard's HTML. maud escapes every value it interpolates, so payloads, headers
//! and error texts from senders and destinations cannot inject markup.

pub mod destinations;
pub mod events;
pub mod layout;
