//! leadrouter: every inbound lead validated, deduplicated, scored, assigned by weighted
//! round-robin and notified, exactly once, with the reason recorded.

pub mod adapters;
pub mod aws;
pub mod cases;
pub mod config;
pub mod crm;
pub mod domain;
pub mod events;
pub mod http;
pub mod notification;
pub mod pipeline;
pub mod ports;
pub mod replay;
pub mod runtime;
pub mod secrets;
pub mod sources;
