//! # fleetset-agent
//!
//! The per-host agent: samples metrics every `sample_interval` ([`collect`]), keeps per-metric
//! ring buffers and closes wall-clock-aligned windows ([`window`]), computes exact window
//! statistics and downsamples each series with MinMax-LTTB ([`downsample`]), seals each window
//! into a checksummed frame (`fleetset_proto::seal`) and sends it to an aggregator over ZeroMQ
//! or gRPC, waiting for one ack per frame ([`sender`], [`transport`]).
//!
//! It never links Arrow or Parquet (`cargo tree -p fleetset-agent`).

#![warn(missing_docs)]

pub mod collect;
pub mod config;
pub mod counters;
pub mod downsample;
pub mod otlp;
pub mod pipeline;
pub mod process;
pub mod replay;
pub mod run;
pub mod sender;
pub mod spool;
pub mod state;
pub mod telemetry;
pub mod transport;
pub mod window;

pub use config::{AgentConfig, RunFlags};
pub use run::{run, RunReport};
