//! Adapters: the ports made real. Embedded: SQLite and in-process channels. Notifiers: HTTP and log.

pub mod channel;
pub mod dynamo;
pub mod graph;
pub mod notifier;
pub mod sqlite;
pub mod sqs;
