//! Online enforcement: `distillguard serve`.
//!
//! Exchanges arrive as events (HTTP now); each is turned into the batch pipeline's per-exchange
//! features and folded into the same per-account [`dg_detect::profile::Profile`] the batch
//! aggregate builds ([`state`]). Every few seconds all accounts are judged with the batch
//! pipeline's own [`dg_detect::analyze::judge`] (traits, links, clusters, verdicts), and the
//! result becomes an immutable decision table that gateways query without locks ([`decide`]).
//! Accepted events are in a write-ahead log before they are acknowledged, and the state is
//! checkpointed together with the log position ([`durable`]), so a killed process resumes
//! with nothing lost and nothing counted twice.
//!
//! **Architecture invariant:** no detection logic lives here; batch and online call the same
//! feature, profile, linking and verdict code, so they agree on the same data.

pub mod cold;
pub mod config;
pub mod decide;
pub mod durable;
pub mod http;
pub mod ids;
pub mod metrics;
pub mod nats;
pub mod service;
pub mod state;

pub use config::{ServeConfig, ServeFile};
pub use service::{IngestReport, ServeError, Service};
