//! Frames: a [`pb::FrameHeader`] plus the encoded snapshot as payload.
//!
//! Sealing ([`seal`]): encode the snapshot (MessagePack or Protobuf), optionally compress it with
//! zstd, put SHA-256 of the resulting payload bytes in the header and, with a fleet key, an
//! HMAC-SHA256 (RFC 2104) over the header (encoded with `hmac_sha256` empty) followed by the
//! payload.
//!
//! Verifying ([`verify`]) runs the cheap checks before the expensive ones — size, version,
//! encoding, compression, checksum, signature, then decompression (bounded) and decoding — and
//! reports the first failure as a [`FrameError`] whose [`FrameError::reason`] goes into the
//! REJECTED ack.
//!
//! On ZeroMQ a frame travels as two message parts, `[FrameHeader (protobuf), payload]`
//! ([`to_parts`], [`from_parts`]); on gRPC as the `pb::Frame` message.

use crate::codec::{decode_snapshot, encode_snapshot, CodecError};
use crate::contract::{shown, Contract, Violation};
use crate::keys::HmacKeys;
use crate::model::Snapshot;
use crate::pb::{self, Compression, Encoding, RejectReason};
use hmac::{Hmac, KeyInit, Mac};
use prost::Message;
use sha2::{Digest, Sha256};
use std::io::Read;

/// The frame format version this crate writes by default. Version 2 adds the header's
/// `config_generation`; otherwise it is version 1.
pub const FRAME_VERSION: u32 = 2;

/// The oldest frame version this crate accepts: the previous one, so an aggregator upgraded
/// first keeps taking the frames of agents not yet upgraded (README "Version skew").
pub const OLDEST_FRAME_VERSION: u32 = 1;

/// Default largest accepted frame (header + payload), bytes: 8 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 8 << 20;

type HmacSha256 = Hmac<Sha256>;

/// Why a frame was rejected. Each variant maps to one [`RejectReason`].
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The header is missing or is not a protobuf `FrameHeader`.
    #[error("malformed header: {0}")]
    MalformedHeader(String),
    /// `version` is not between [`OLDEST_FRAME_VERSION`] and [`FRAME_VERSION`].
    #[error("unsupported frame version {got} (this build accepts {OLDEST_FRAME_VERSION} to {FRAME_VERSION})")]
    BadVersion {
        /// The header's version.
        got: u32,
    },
    /// The payload encoding is unspecified or unknown.
    #[error("unknown payload encoding {0}")]
    UnknownEncoding(i32),
    /// The compression is unknown.
    #[error("unknown compression {0}")]
    UnknownCompression(i32),
    /// The frame (or its decompressed payload) is larger than allowed.
    #[error("oversize: {what} is {size} bytes, limit {limit}")]
    Oversize {
        /// What was too large ("frame" or "decompressed payload").
        what: &'static str,
        /// Its size, bytes (a lower bound when decompression was cut off).
        size: usize,
        /// The limit, bytes.
        limit: usize,
    },
    /// SHA-256 of the payload differs from the header's.
    #[error("checksum mismatch: header sha256 {expected}, payload sha256 {actual}")]
    ChecksumMismatch {
        /// Hex digest in the header.
        expected: String,
        /// Hex digest of the payload received.
        actual: String,
    },
    /// The HMAC is missing, unexpected or wrong.
    #[error("bad signature: {0}")]
    BadSignature(&'static str),
    /// Decompression or decoding failed.
    #[error("undecodable payload: {0}")]
    Undecodable(String),
    /// The snapshot's agent_id / seq / window differ from the header's.
    #[error("header does not match payload: {0}")]
    HeaderMismatch(String),
    /// The header or snapshot breaks the contract ([`Snapshot::validate`]).
    #[error("invalid snapshot: {0}")]
    InvalidSnapshot(String),
    /// The window starts too far from the receiver's clock ([`Contract::max_skew_ms`],
    /// [`Contract::max_age_ms`]).
    #[error("window out of range: {0}")]
    OutOfRange(String),
    /// The header's agent id is not the one the transport authenticated the sender as.
    #[error("wrong identity: the sender is authenticated as agent {authenticated:?}, the frame is for {claimed:?}")]
    WrongIdentity {
        /// The header's agent id (bounded and escaped by the caller when shown).
        claimed: String,
        /// The agent id the sender authenticated as (mTLS certificate, CURVE key).
        authenticated: String,
    },
}

impl From<Violation> for FrameError {
    fn from(v: Violation) -> Self {
        match v {
            Violation::Invalid(e) => FrameError::InvalidSnapshot(e),
            Violation::OutOfRange(e) => FrameError::OutOfRange(e),
        }
    }
}

impl FrameError {
    /// The same error, its text saying it was found in the header.
    fn in_header(self) -> FrameError {
        match self {
            FrameError::InvalidSnapshot(e) => FrameError::InvalidSnapshot(format!("header: {e}")),
            FrameError::OutOfRange(e) => FrameError::OutOfRange(format!("header: {e}")),
            other => other,
        }
    }

    /// The reject reason carried in the ack.
    pub fn reason(&self) -> RejectReason {
        match self {
            FrameError::MalformedHeader(_) => RejectReason::MalformedHeader,
            FrameError::BadVersion { .. } => RejectReason::BadVersion,
            FrameError::UnknownEncoding(_) => RejectReason::UnknownEncoding,
            FrameError::UnknownCompression(_) => RejectReason::UnknownCompression,
            FrameError::Oversize { .. } => RejectReason::Oversize,
            FrameError::ChecksumMismatch { .. } => RejectReason::ChecksumMismatch,
            FrameError::BadSignature(_) => RejectReason::BadSignature,
            FrameError::Undecodable(_) => RejectReason::Undecodable,
            FrameError::HeaderMismatch(_) => RejectReason::HeaderMismatch,
            FrameError::InvalidSnapshot(_) => RejectReason::InvalidSnapshot,
            FrameError::OutOfRange(_) => RejectReason::WindowOutOfRange,
            FrameError::WrongIdentity { .. } => RejectReason::WrongIdentity,
        }
    }
}

/// How to seal a snapshot.
#[derive(Debug, Clone, Default)]
pub struct SealOptions {
    /// Payload encoding (MessagePack or Protobuf).
    pub encoding: Encoding,
    /// Payload compression.
    pub compression: Compression,
    /// HMAC-SHA256 key: this agent's derived key ([`crate::keys::agent_key`]) or the fleet-wide
    /// shared key; `None` leaves the frame unsigned.
    pub hmac_key: Option<Vec<u8>>,
}

/// What a receiver accepts.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Largest frame (header + payload as received), bytes.
    pub max_frame_bytes: usize,
    /// Largest payload after decompression, bytes.
    pub max_decompressed_bytes: usize,
    /// HMAC keys: when in use, every frame must carry a valid HMAC made with the key of its
    /// header's agent id ([`HmacKeys::key_for`]); an unsigned frame is `BAD_SIGNATURE`.
    pub keys: HmacKeys,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_decompressed_bytes: 4 * DEFAULT_MAX_FRAME_BYTES,
            keys: HmacKeys::None,
        }
    }
}

/// The receiver's clock, Unix ms (0 before 1970).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn mac(key: &[u8], header: &pb::FrameHeader, payload: &[u8]) -> HmacSha256 {
    let mut unsigned = header.clone();
    unsigned.hmac_sha256.clear();
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    m.update(&unsigned.encode_to_vec());
    m.update(payload);
    m
}

/// Encodes, compresses, checksums and optionally signs `snapshot` into a [`FRAME_VERSION`]
/// frame whose header copies the snapshot's `agent_id`, `seq` and window
/// (`config_generation` 0: unknown).
pub fn seal(snapshot: &Snapshot, opts: &SealOptions) -> Result<pb::Frame, CodecError> {
    seal_as(snapshot, opts, Versioned::default())
}

/// The frame version to seal and what only that version carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versioned {
    /// [`OLDEST_FRAME_VERSION`] ..= [`FRAME_VERSION`]: an agent upgraded before its
    /// aggregators seals the previous version until they are upgraded.
    pub version: u32,
    /// Version 2: the configuration generation that framed the window (ignored for 1).
    pub config_generation: u64,
}

impl Default for Versioned {
    fn default() -> Self {
        Versioned {
            version: FRAME_VERSION,
            config_generation: 0,
        }
    }
}

/// [`seal`] at `versioned.version`.
pub fn seal_as(
    snapshot: &Snapshot,
    opts: &SealOptions,
    versioned: Versioned,
) -> Result<pb::Frame, CodecError> {
    let encoded = encode_snapshot(snapshot, opts.encoding)?;
    let payload = match opts.compression {
        Compression::None => encoded,
        // Level 3 is zstd's default: ~4x on a 5-minute window for ~1 ms.
        Compression::Zstd => zstd::bulk::compress(&encoded, 3).map_err(CodecError::Compress)?,
    };
    let mut header = pb::FrameHeader {
        version: versioned.version,
        encoding: opts.encoding as i32,
        compression: opts.compression as i32,
        agent_id: snapshot.agent_id.clone(),
        seq: snapshot.seq,
        window_start_ms: snapshot.start,
        window_end_ms: snapshot.end,
        payload_sha256: sha256(&payload).to_vec(),
        hmac_sha256: Vec::new(),
        config_generation: match versioned.version {
            1 => 0,
            _ => versioned.config_generation,
        },
    };
    if let Some(key) = &opts.hmac_key {
        header.hmac_sha256 = mac(key, &header, &payload).finalize().into_bytes().to_vec();
    }
    Ok(pb::Frame {
        header: Some(header),
        payload,
    })
}

/// Splits a frame into its ZeroMQ message parts `[header (protobuf FrameHeader), payload]`.
pub fn to_parts(frame: &pb::Frame) -> [Vec<u8>; 2] {
    let header = frame
        .header
        .as_ref()
        .map(Message::encode_to_vec)
        .unwrap_or_default();
    [header, frame.payload.clone()]
}

/// Rebuilds a frame from ZeroMQ message parts `[header, payload]`.
pub fn from_parts(header: &[u8], payload: Vec<u8>) -> Result<pb::Frame, FrameError> {
    let header = pb::FrameHeader::decode(header)
        .map_err(|e| FrameError::MalformedHeader(format!("header is not a FrameHeader: {e}")))?;
    Ok(pb::Frame {
        header: Some(header),
        payload,
    })
}

/// [`verify_with`] the default [`Contract`].
pub fn verify(frame: &pb::Frame, opts: &VerifyOptions) -> Result<Snapshot, FrameError> {
    verify_with(frame, opts, &Contract::default())
}

/// Verifies `frame` against `opts` and `contract` (at this host's clock) and decodes its
/// snapshot; the first failed check is the error. The header's key fields are checked against
/// the contract right after the version, before the payload is hashed or decoded.
pub fn verify_with(
    frame: &pb::Frame,
    opts: &VerifyOptions,
    contract: &Contract,
) -> Result<Snapshot, FrameError> {
    let header = frame
        .header
        .as_ref()
        .ok_or_else(|| FrameError::MalformedHeader("frame has no header".into()))?;
    let size = header.encoded_len() + frame.payload.len();
    if size > opts.max_frame_bytes {
        return Err(FrameError::Oversize {
            what: "frame",
            size,
            limit: opts.max_frame_bytes,
        });
    }
    if !(OLDEST_FRAME_VERSION..=FRAME_VERSION).contains(&header.version) {
        return Err(FrameError::BadVersion {
            got: header.version,
        });
    }
    let now = now_ms();
    contract
        .check_key(
            &header.agent_id,
            header.seq,
            header.window_start_ms,
            header.window_end_ms,
            now,
        )
        .map_err(|v| FrameError::from(v).in_header())?;
    let encoding = match Encoding::try_from(header.encoding) {
        Ok(e @ (Encoding::Msgpack | Encoding::Protobuf)) => e,
        _ => return Err(FrameError::UnknownEncoding(header.encoding)),
    };
    let compression = Compression::try_from(header.compression)
        .map_err(|_| FrameError::UnknownCompression(header.compression))?;
    let actual = sha256(&frame.payload);
    if header.payload_sha256 != actual {
        return Err(FrameError::ChecksumMismatch {
            expected: hex::encode(&header.payload_sha256),
            actual: hex::encode(actual),
        });
    }
    match (
        opts.keys.key_for(&header.agent_id),
        header.hmac_sha256.is_empty(),
    ) {
        (Some(_), true) => {
            return Err(FrameError::BadSignature(
                "frame is unsigned but HMAC keys are in use",
            ))
        }
        (Some(key), false) => mac(&key, header, &frame.payload)
            .verify_slice(&header.hmac_sha256)
            .map_err(|_| {
                FrameError::BadSignature(match opts.keys {
                    HmacKeys::PerAgent { .. } => {
                        "HMAC-SHA256 does not match the key of the header's agent id"
                    }
                    _ => "HMAC-SHA256 does not match the fleet key",
                })
            })?,
        (None, _) => {}
    }
    let decompressed;
    let encoded: &[u8] = match compression {
        Compression::None => &frame.payload,
        Compression::Zstd => {
            decompressed = decompress_bounded(&frame.payload, opts.max_decompressed_bytes)?;
            &decompressed
        }
    };
    let snapshot =
        decode_snapshot(encoded, encoding).map_err(|e| FrameError::Undecodable(e.to_string()))?;
    if snapshot.agent_id != header.agent_id
        || snapshot.seq != header.seq
        || snapshot.start != header.window_start_ms
        || snapshot.end != header.window_end_ms
    {
        return Err(FrameError::HeaderMismatch(format!(
            "header ({}, seq {}, [{}, {})) vs payload ({}, seq {}, [{}, {}))",
            header.agent_id,
            header.seq,
            header.window_start_ms,
            header.window_end_ms,
            shown(&snapshot.agent_id),
            snapshot.seq,
            snapshot.start,
            snapshot.end
        )));
    }
    snapshot.validate(contract, now)?;
    Ok(snapshot)
}

/// zstd-decompresses `payload`, refusing to produce more than `limit` bytes (zip-bomb guard).
fn decompress_bounded(payload: &[u8], limit: usize) -> Result<Vec<u8>, FrameError> {
    let decoder = zstd::stream::read::Decoder::new(payload)
        .map_err(|e| FrameError::Undecodable(format!("zstd: {e}")))?;
    let mut out = Vec::new();
    decoder
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| FrameError::Undecodable(format!("zstd: {e}")))?;
    if out.len() > limit {
        return Err(FrameError::Oversize {
            what: "decompressed payload",
            size: out.len(),
            limit,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Point;

    fn snapshot() -> Snapshot {
        let mut s = Snapshot {
            agent_id: "agent-1".into(),
            start: 300_000,
            end: 600_000,
            seq: 3,
            ..Default::default()
        };
        let pts = (0..300)
            .map(|i| Point {
                ts_ms: 300_000 + i * 1000,
                value: i as f64,
            })
            .collect();
        s.data.insert("cpu_percent".into(), pts);
        s
    }

    fn all_opts() -> Vec<SealOptions> {
        let mut v = Vec::new();
        for encoding in [Encoding::Msgpack, Encoding::Protobuf] {
            for compression in [Compression::None, Compression::Zstd] {
                for hmac_key in [None, Some(b"fleet-key".to_vec())] {
                    v.push(SealOptions {
                        encoding,
                        compression,
                        hmac_key,
                    });
                }
            }
        }
        v
    }

    #[test]
    fn sealed_frames_verify_in_every_combination() {
        for opts in all_opts() {
            let frame = seal(&snapshot(), &opts).unwrap();
            let v = VerifyOptions {
                keys: opts
                    .hmac_key
                    .clone()
                    .map_or(HmacKeys::None, HmacKeys::Shared),
                ..Default::default()
            };
            assert_eq!(verify(&frame, &v).unwrap(), snapshot(), "{opts:?}");
            let [h, p] = to_parts(&frame);
            assert_eq!(from_parts(&h, p).unwrap(), frame);
        }
    }

    #[test]
    fn each_defect_is_named() {
        let v = VerifyOptions::default();
        let good = seal(
            &snapshot(),
            &SealOptions {
                encoding: Encoding::Msgpack,
                ..Default::default()
            },
        )
        .unwrap();
        let reason = |f: &pb::Frame, v: &VerifyOptions| verify(f, v).unwrap_err().reason();

        let mut f = good.clone();
        f.payload[10] ^= 0x01;
        assert_eq!(reason(&f, &v), RejectReason::ChecksumMismatch);

        for version in [0, FRAME_VERSION + 1, 99] {
            let mut f = good.clone();
            f.header.as_mut().unwrap().version = version;
            assert_eq!(
                reason(&f, &v),
                RejectReason::BadVersion,
                "version {version}"
            );
        }

        let mut f = good.clone();
        f.header.as_mut().unwrap().encoding = 42;
        assert_eq!(reason(&f, &v), RejectReason::UnknownEncoding);

        let mut f = good.clone();
        f.header.as_mut().unwrap().compression = 7;
        assert_eq!(reason(&f, &v), RejectReason::UnknownCompression);

        let small = VerifyOptions {
            max_frame_bytes: 100,
            ..Default::default()
        };
        assert_eq!(reason(&good, &small), RejectReason::Oversize);

        let mut f = good.clone();
        f.header.as_mut().unwrap().seq = 4;
        assert_eq!(reason(&f, &v), RejectReason::HeaderMismatch);

        let mut f = good.clone();
        f.payload = b"not msgpack".to_vec();
        f.header.as_mut().unwrap().payload_sha256 = sha256(&f.payload).to_vec();
        assert_eq!(reason(&f, &v), RejectReason::Undecodable);

        let keyed = VerifyOptions {
            keys: HmacKeys::Shared(b"k".to_vec()),
            ..Default::default()
        };
        assert_eq!(reason(&good, &keyed), RejectReason::BadSignature);
        let signed = seal(
            &snapshot(),
            &SealOptions {
                hmac_key: Some(b"other".to_vec()),
                encoding: Encoding::Msgpack,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(reason(&signed, &keyed), RejectReason::BadSignature);

        assert_eq!(
            from_parts(b"\xff\xff\xff", vec![]).unwrap_err().reason(),
            RejectReason::MalformedHeader
        );
    }

    #[test]
    fn per_agent_keys_bind_a_frame_to_its_agent() {
        let master = b"master".to_vec();
        let v = VerifyOptions {
            keys: HmacKeys::PerAgent {
                master: master.clone(),
            },
            ..Default::default()
        };
        let sealed = |key: Option<Vec<u8>>| {
            seal(
                &snapshot(),
                &SealOptions {
                    hmac_key: key,
                    encoding: Encoding::Msgpack,
                    ..Default::default()
                },
            )
            .unwrap()
        };
        let own = crate::keys::agent_key(&master, "agent-1").to_vec();
        assert_eq!(verify(&sealed(Some(own)), &v).unwrap(), snapshot());
        // agent-1's frame signed by agent-2 with its own (valid) key, unsigned, a made-up key.
        let other = crate::keys::agent_key(&master, "agent-2").to_vec();
        for key in [Some(other), None, Some(b"made-up".to_vec()), Some(master)] {
            let f = sealed(key.clone());
            assert_eq!(
                verify(&f, &v).unwrap_err().reason(),
                RejectReason::BadSignature,
                "{key:?}"
            );
        }
    }

    #[test]
    fn zip_bombs_are_oversize() {
        let opts = SealOptions {
            encoding: Encoding::Msgpack,
            compression: Compression::Zstd,
            hmac_key: None,
        };
        let frame = seal(&snapshot(), &opts).unwrap();
        let v = VerifyOptions {
            max_decompressed_bytes: 64,
            ..Default::default()
        };
        assert_eq!(
            verify(&frame, &v).unwrap_err().reason(),
            RejectReason::Oversize
        );
    }
}
