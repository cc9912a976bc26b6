//! # fleetset-aggregator
//!
//! Receives frames from agents over ZeroMQ ([`ingest::zmq`]) and gRPC ([`ingest::grpc`]),
//! verifies each one ([`ingest::Admission`]), de-duplicates and commits them to partitioned
//! Parquet ([`store`]), and acks each frame only once its rows are durable. Accepted windows go
//! live at once to gRPC subscribers and a ZeroMQ PUB socket ([`live`]).

#![warn(missing_docs)]

pub mod client;
pub mod config;
pub mod control;
pub mod counters;
#[cfg(feature = "demo")]
pub mod demo;
pub mod export;
pub mod fleet;
#[doc(hidden)]
pub mod fuzzing;
pub mod ingest;
pub(crate) mod live;
pub mod pki;
pub mod security;
pub mod server;
pub mod store;
pub mod tail;
pub(crate) mod telemetry;
pub(crate) mod web;
pub(crate) mod zmq_endpoint;
