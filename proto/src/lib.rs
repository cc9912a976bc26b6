//! # fleetset-proto — the wire contract shared by agent and aggregator
//!
//! - [`pb`]: prost/tonic code generated from `proto/fleetset/v1/fleetset.proto` (frame header,
//!   frame, ack, snapshot, the `Ingest` gRPC service).
//! - [`model`]: the [`Snapshot`] of one agent and one window, whose MessagePack form is a
//!   superset of seed 004's `MetricsSnapshot` (`agent_id, start, end, data{metric: [[ts, v], …]}`).
//! - [`codec`]: MessagePack (rmp-serde, named fields) and Protobuf (prost) encodings of a snapshot;
//!   both decode to identical values.
//! - [`contract`]: what a frame header and snapshot must satisfy before anything is stored
//!   (names, seq, window, caps, stats), and how unchecked strings are shown.
//! - [`frame`]: sealing a snapshot into a checksummed (SHA-256, optional HMAC-SHA256) [`pb::Frame`]
//!   and verifying a received frame, with a [`frame::FrameError`] that names what is wrong.
//! - [`opamp`]: OpAMP `AgentToServer` / `ServerToAgent` (the control plane's wire protocol).
//! - [`keys`]: per-agent HMAC keys derived from a fleet master key, and signed acks.

#![warn(missing_docs)]

pub mod codec;
pub mod contract;
pub mod frame;
pub mod keys;
pub mod model;

/// Code generated from `proto/fleetset/v1/fleetset.proto` (package `fleetset.v1`).
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("fleetset.v1");
}

/// OpAMP messages (package `opamp.proto`), generated from `proto/opamp/opamp.proto` and
/// `anyvalue.proto`, written from the OpAMP specification (open-telemetry/opamp-spec).
#[allow(missing_docs, clippy::all)]
pub mod opamp {
    include!(concat!(env!("OUT_DIR"), "/opamp.proto.rs"));
}

/// The encoded `FileDescriptorSet` of `fleetset/v1/fleetset.proto`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/fleetset_descriptor.bin"));

pub use codec::{decode_snapshot, encode_snapshot, CodecError};
pub use contract::{Contract, Violation};
pub use frame::{
    seal, seal_as, verify, verify_with, FrameError, SealOptions, VerifyOptions, Versioned,
    FRAME_VERSION, OLDEST_FRAME_VERSION,
};
pub use keys::{ack_verifies, agent_key, sign_ack, HmacKeys};
pub use model::{HostInfo, Point, ProcessRecord, Snapshot, WindowStats};
pub use pb::{AckStatus, Compression, Encoding, RejectReason};
