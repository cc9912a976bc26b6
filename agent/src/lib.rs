//! # fleetset-agent
//!
//! The per-host agent: samples metrics every `sample_interval` ([`collect`]), keeps per-metric
//! ring buffers and closes wall-clock-aligned windows (`fleetset_core::window`), computes exact window
//! statistics and downsamples each series with MinMax-LTTB (`fleetset_core::window`), seals each window
//! into a checksummed frame (`fleetset_proto::seal`) and sends it to an aggregator over ZeroMQ
//! or gRPC, waiting for one ack per frame ([`sender`], [`transport`]).
//!
//! It never links Arrow or Parquet (`cargo tree -p fleetset-agent`).

#![warn(missing_docs)]

pub mod collect;
pub mod config;
pub mod counters;
pub mod events;
pub mod otlp;
pub mod pipeline;
pub mod replay;
pub mod run;
pub mod sender;
pub mod spool;
pub mod state;
pub mod transport;

pub use config::{AgentConfig, RunFlags};
pub use run::{run, RunReport};
