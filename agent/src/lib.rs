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
pub mod control;
pub(crate) mod counters;
pub mod events;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod otlp;
pub mod pipeline;
pub mod replay;
pub mod run;
pub(crate) mod sender;
pub(crate) mod spool;
pub(crate) mod state;
pub(crate) mod telemetry;
pub(crate) mod tls;
pub(crate) mod transport;

pub use config::{AgentConfig, RunFlags};
pub use run::{run, RunReport};
pub use spool::FsyncPolicy;
