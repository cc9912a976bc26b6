//! # fleetset-core
//!
//! What both fleetset binaries use, so that neither depends on the other:
//! - the data path of a window: [`window`] (ring buffers, wall-clock-aligned windows, exact
//!   statistics, snapshot building) and [`downsample`] (input cleaning, MinMax-LTTB with
//!   tsdownsample's tie rules, the window's extremes always kept);
//! - the rules for names and times: [`names`] (agent ids, metric names, labels) and [`time`];
//! - [`config`]: configuration declared once (layering, checks, `print-config`, docs);
//! - [`secret`] files (get-or-create, fsynced, mode 0600);
//! - own telemetry ([`telemetry`]: `/metrics`, `/healthz`, OTLP push), bounded TCP listeners
//!   ([`net`]: connection limit, idle timeout), TLS on listeners ([`tls`]: certificates
//!   reloaded from disk), an HTTP/1.1 client ([`http`]: OpAMP, `fleet` commands) and process plumbing ([`process`]: logging,
//!   signals).
//!
//! The wire contract (snapshot model, codecs, frames) stays in `fleetset-proto`. This crate links
//! no Arrow or Parquet: the agent depends on it.

#![warn(missing_docs)]

// The `Section` derive names `::fleetset_core`, also inside this crate.
extern crate self as fleetset_core;

pub mod config;
pub mod counters;
pub mod doorbell;
pub mod downsample;
pub mod http;
pub mod names;
pub mod net;
pub mod process;
pub mod secret;
pub mod telemetry;
pub mod time;
pub mod tls;
pub mod window;
