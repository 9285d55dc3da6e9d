//! Alerts to a person (`[alerts]`, whose settings are in `config::alerts`): the message
//! each alert becomes, the task that sends them and the task that watches destinations'
//! lag.

pub mod message;
pub mod monitor;
pub mod sender;
