//! Links from the agent to an aggregator: send frames, receive acks.
//!
//! - ZeroMQ: a DEALER connected to the aggregator's ROUTER; a frame is the two-part message
//!   `[FrameHeader (protobuf), payload]`, an ack the one-part message `Ack (protobuf)`.
//!   The DEALER is libzmq's ([`zmq`]): it bounds what it accepts, heartbeats and reconnects by
//!   itself; the sender still recreates the link when acks stop coming (the ZeroMQ guide's
//!   "Lazy Pirate" pattern) or a send fails.
//! - gRPC: one `Ingest.Publish` bidirectional stream per link.
//! - OTLP: one `MetricsService/Export` call per frame (see [`crate::otlp`]); the response is
//!   turned into the frame's ack.

use crate::config::TransportArg;
use fleetset_proto::frame::to_parts;
use fleetset_proto::pb::{self, ingest_client::IngestClient};
use std::future::Future;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

pub mod zmq;
pub mod zmq_config;

/// Why a link failed; the sender recreates it.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// ZeroMQ socket setup, send or receive failed (libzmq's error).
    #[error("zeromq: {0}")]
    Zmq(String),
    /// gRPC connect or stream failed.
    #[error("grpc: {0}")]
    Grpc(String),
    /// The aggregator sent something that is not an Ack.
    #[error("bad ack from aggregator: {0}")]
    BadAck(String),
    /// The aggregator closed the stream.
    #[error("aggregator closed the stream")]
    Closed,
}

/// One connection to an aggregator.
pub enum Link {
    /// ZeroMQ DEALER → ROUTER.
    Zmq(zmq::ZmqLink),
    /// gRPC `Publish` stream: outgoing frames and incoming acks.
    Grpc {
        /// Frames to send.
        tx: mpsc::Sender<pb::Frame>,
        /// Acks received.
        acks: tonic::Streaming<pb::Ack>,
    },
    /// OTLP/gRPC: each frame's snapshot exported; acks made from the responses.
    Otlp {
        /// The client.
        exporter: crate::otlp::OtlpExporter,
        /// Acks of frames exported, not yet received by the sender.
        acks: std::collections::VecDeque<pb::Ack>,
    },
}

impl Link {
    /// Connects to `endpoint`, giving up after `timeout`.
    pub async fn connect(
        transport: TransportArg,
        endpoint: &str,
        timeout: Duration,
        agent_id: &str,
        tls: &crate::config::ClientTlsConfig,
        zmq_cfg: &zmq_config::ZmqConfig,
        curve: &zmq_config::CurveConfig,
    ) -> Result<Link, LinkError> {
        match transport {
            TransportArg::Zmq => {
                // A per-connection identity lets the ROUTER tell an agent's new socket from its old one.
                // ZMTP identities are at most 255 bytes.
                let short: String = agent_id.chars().take(200).collect();
                let identity = format!("{short}/{:08x}", rand::random::<u32>());
                // Read at every (re)connect, like the TLS files.
                let keys = curve.keys().map_err(LinkError::Zmq)?;
                Ok(Link::Zmq(zmq::ZmqLink::connect(
                    endpoint,
                    identity.as_bytes(),
                    timeout,
                    zmq_cfg,
                    keys.as_ref(),
                )?))
            }
            TransportArg::Grpc => {
                let channel = crate::tls::endpoint(endpoint, tls, timeout)
                    .map_err(LinkError::Grpc)?
                    .connect()
                    .await
                    .map_err(|e| LinkError::Grpc(format!("connect {endpoint}: {e}")))?;
                let (tx, rx) = mpsc::channel(256);
                let response = tokio::time::timeout(
                    timeout,
                    IngestClient::new(channel).publish(ReceiverStream::new(rx)),
                )
                .await
                .map_err(|_| LinkError::Grpc("Publish did not open in time".into()))?
                .map_err(|s| LinkError::Grpc(format!("Publish: {s}")))?;
                Ok(Link::Grpc {
                    tx,
                    acks: response.into_inner(),
                })
            }
            TransportArg::Otlp => Ok(Link::Otlp {
                exporter: crate::otlp::OtlpExporter::connect(endpoint, tls, timeout)
                    .await
                    .map_err(LinkError::Grpc)?,
                acks: Default::default(),
            }),
        }
    }

    /// Sends one frame (queued in the transport; the ack comes later).
    pub async fn send(&mut self, frame: &pb::Frame) -> Result<(), LinkError> {
        match self {
            Link::Zmq(link) => link.send(to_parts(frame)).await,
            Link::Grpc { tx, .. } => tx.send(frame.clone()).await.map_err(|_| LinkError::Closed),
            Link::Otlp { exporter, acks } => {
                let header = frame.header.clone().unwrap_or_default();
                let mut ack = pb::Ack {
                    agent_id: header.agent_id.clone(),
                    seq: header.seq,
                    status: pb::AckStatus::Committed as i32,
                    ..Default::default()
                };
                // Our own frame: decoding it cannot fail unless the spool file was damaged.
                match fleetset_proto::verify(frame, &fleetset_proto::VerifyOptions::default()) {
                    Ok(snapshot) => {
                        match exporter.export(&snapshot).await.map_err(LinkError::Grpc)? {
                            crate::otlp::Exported::Accepted => {}
                            crate::otlp::Exported::Rejected(why) => {
                                ack.status = pb::AckStatus::Rejected as i32;
                                ack.detail = why;
                            }
                        }
                    }
                    Err(e) => {
                        ack.status = pb::AckStatus::Rejected as i32;
                        ack.detail = e.to_string();
                    }
                }
                acks.push_back(ack);
                Ok(())
            }
        }
    }

    /// Waits for the next ack.
    pub async fn recv(&mut self) -> Result<pb::Ack, LinkError> {
        match self {
            Link::Zmq(link) => link.recv().await,
            Link::Grpc { acks, .. } => match acks.message().await {
                Ok(Some(ack)) => Ok(ack),
                Ok(None) => Err(LinkError::Closed),
                Err(status) => Err(LinkError::Grpc(status.to_string())),
            },
            Link::Otlp { acks, .. } => match acks.pop_front() {
                Some(ack) => Ok(ack),
                None => std::future::pending().await,
            },
        }
    }
}

/// What the send loop needs of a link: send a frame, wait for the next ack. [`Link`] is the real
/// one; the sender's unit tests drive an in-memory fake.
pub trait FrameLink: Send {
    /// Sends one frame (queued in the transport; the ack comes later).
    fn send(&mut self, frame: &pb::Frame) -> impl Future<Output = Result<(), LinkError>> + Send;
    /// Waits for the next ack; an error means the link is gone.
    fn recv(&mut self) -> impl Future<Output = Result<pb::Ack, LinkError>> + Send;
}

/// Makes links; the send loop calls it for the first link and after each failure.
pub trait Connect: Send {
    /// The link type made.
    type Link: FrameLink;
    /// Opens a new link.
    fn connect(&mut self) -> impl Future<Output = Result<Self::Link, LinkError>> + Send;
}

impl FrameLink for Link {
    fn send(&mut self, frame: &pb::Frame) -> impl Future<Output = Result<(), LinkError>> + Send {
        Link::send(self, frame)
    }
    fn recv(&mut self) -> impl Future<Output = Result<pb::Ack, LinkError>> + Send {
        Link::recv(self)
    }
}

/// The real [`Connect`]: [`Link::connect`] with fixed settings.
#[derive(Debug, Clone)]
pub struct Dial {
    /// Transport.
    pub transport: TransportArg,
    /// Aggregator (or OTLP collector) endpoint.
    pub endpoint: String,
    /// Connect timeout.
    pub timeout: Duration,
    /// This agent's id (the ZeroMQ identity is derived from it).
    pub agent_id: String,
    /// TLS of the gRPC and OTLP links.
    pub tls: crate::config::ClientTlsConfig,
    /// The ZeroMQ link's limits (`[transport.zmq]`).
    pub zmq: zmq_config::ZmqConfig,
    /// CURVE of the ZeroMQ link (`[transport.curve]`).
    pub curve: zmq_config::CurveConfig,
}

impl Connect for Dial {
    type Link = Link;
    fn connect(&mut self) -> impl Future<Output = Result<Link, LinkError>> + Send {
        Link::connect(
            self.transport,
            &self.endpoint,
            self.timeout,
            &self.agent_id,
            &self.tls,
            &self.zmq,
            &self.curve,
        )
    }
}
