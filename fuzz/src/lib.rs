//! Shared pieces of the fleetset fuzz targets (docs/fuzzing.md): reading fuzz input, sealing
//! fuzzed payload bytes into frames that pass the checksum, and the checks every outcome must
//! satisfy (what passes verification is a valid, round-tripping snapshot; what fails is
//! reported with a bounded text).

use fleetset_proto::codec::{decode_snapshot, encode_snapshot};
use fleetset_proto::contract::{
    is_valid_agent_id, MAX_AGENT_ID_LEN, MAX_DETAIL_CHARS, SHOWN_CHARS,
};
use fleetset_proto::frame::sha256;
use fleetset_proto::pb::{self, Compression, Encoding};
use fleetset_proto::{
    seal, verify_with, Contract, HmacKeys, SealOptions, Snapshot, VerifyOptions, FRAME_VERSION,
};
use hmac::{Hmac, KeyInit, Mac};
use prost::Message;

/// The fleet key of the signed variants (`fuzz/seeds.sh` signs with the same, as hex).
pub const FLEET_KEY: &[u8] = &[
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
];

/// A window start every default contract accepts (2023-11-14T22:13:20Z), Unix ms.
pub const START_MS: i64 = 1_700_000_000_000;

/// Fuzz input read front to back; reads past the end give zeros / empty slices.
pub struct Input<'a>(pub &'a [u8]);

impl<'a> Input<'a> {
    /// The next byte (0 at the end).
    pub fn u8(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }

    /// The next two bytes, little-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// The next `n` bytes (fewer at the end).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }

    /// A part prefixed by its u16 length.
    pub fn part(&mut self) -> &'a [u8] {
        let n = usize::from(self.u16());
        self.take(n)
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(self.0.len())
    }
}

/// The payload encoding selected by `b` (including the invalid values 0 and 3).
pub fn encoding(b: u8) -> i32 {
    i32::from(b % 4)
}

/// The encoding a verifier would decode `e` with, if any.
pub fn known_encoding(e: i32) -> Option<Encoding> {
    match Encoding::try_from(e) {
        Ok(e @ (Encoding::Msgpack | Encoding::Protobuf)) => Some(e),
        _ => None,
    }
}

/// HMAC-SHA256 of a frame as the wire contract defines it (header with `hmac_sha256` empty,
/// then the payload).
pub fn hmac(key: &[u8], header: &pb::FrameHeader, payload: &[u8]) -> Vec<u8> {
    let mut unsigned = header.clone();
    unsigned.hmac_sha256.clear();
    let mut m = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    m.update(&unsigned.encode_to_vec());
    m.update(payload);
    m.finalize().into_bytes().to_vec()
}

/// Makes `frame`'s checksum (and, with `key`, signature) match its payload, so verification
/// goes on to decompression and decoding.
pub fn reseal(frame: &mut pb::Frame, key: Option<&[u8]>) {
    let header = frame.header.get_or_insert_with(Default::default);
    header.payload_sha256 = sha256(&frame.payload).to_vec();
    header.hmac_sha256.clear();
    if let Some(key) = key {
        header.hmac_sha256 = hmac(key, header, &frame.payload);
    }
}

/// A frame around fuzzed `encoded` payload bytes: compressed with zstd first when `compress`
/// (so the decoders, not the decompressor, see the fuzzed bytes), the header taken from the
/// payload if it decodes (so the contract checks are reached) or else a valid default key, and
/// the checksum and signature right.
pub fn seal_around(encoded: &[u8], encoding: i32, compress: bool, key: Option<&[u8]>) -> pb::Frame {
    let decoded = known_encoding(encoding).and_then(|e| decode_snapshot(encoded, e).ok());
    let (agent_id, seq, start, end) = decoded.map_or_else(
        || ("fuzz-agent".to_string(), 1, START_MS, START_MS + 60_000),
        |s| (s.agent_id, s.seq, s.start, s.end),
    );
    let (compression, payload) = match compress.then(|| zstd::bulk::compress(encoded, 1)) {
        Some(Ok(z)) => (Compression::Zstd, z),
        _ => (Compression::None, encoded.to_vec()),
    };
    let mut frame = pb::Frame {
        header: Some(pb::FrameHeader {
            version: FRAME_VERSION,
            encoding,
            compression: compression as i32,
            agent_id,
            seq,
            window_start_ms: start,
            window_end_ms: end,
            ..Default::default()
        }),
        payload,
    };
    reseal(&mut frame, key);
    frame
}

/// Receiver limits: the defaults, or (odd `b`) small ones, with the fleet key when `key`.
pub fn verify_options(b: u8, key: bool) -> VerifyOptions {
    let mut o = VerifyOptions::default();
    if b % 2 == 1 {
        o.max_frame_bytes = 4096;
        o.max_decompressed_bytes = 8192;
    }
    if key {
        o.keys = HmacKeys::Shared(FLEET_KEY.to_vec());
    }
    o
}

/// The contract: the default, or (odd `b`) tight limits as an operator could set them
/// (`[ingest]` keys): short windows, a max age, few metrics, labels and processes.
pub fn contract(b: u8) -> Contract {
    if b % 2 == 0 {
        return Contract::default();
    }
    Contract {
        max_window_ms: 3_600_000,
        max_skew_ms: 1_000,
        max_age_ms: Some(10 * 365 * 86_400_000),
        max_metrics: 4,
        max_labels: 2,
        max_processes: 2,
        max_label_value_bytes: 8,
        max_string_bytes: 16,
    }
}

/// The receiver's clock, Unix ms.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What a snapshot that passed verification must be: valid under `contract`, and the same
/// value after encoding in either encoding (with and without zstd) and verifying again.
pub fn check_accepted(s: &Snapshot, opts: &VerifyOptions, contract: &Contract) {
    assert!(
        is_valid_agent_id(&s.agent_id),
        "accepted an invalid agent id {:?}",
        s.agent_id
    );
    s.validate(contract, now_ms())
        .expect("an accepted snapshot is valid");
    for encoding in [Encoding::Msgpack, Encoding::Protobuf] {
        let bytes = encode_snapshot(s, encoding).expect("an accepted snapshot encodes");
        let back = decode_snapshot(&bytes, encoding).expect("its encoding decodes");
        assert_eq!(&back, s, "{encoding:?} round trip changed the snapshot");
        for compression in [Compression::None, Compression::Zstd] {
            let sealed = SealOptions {
                encoding,
                compression,
                hmac_key: opts.keys.key_for(&s.agent_id),
            };
            let frame = seal(s, &sealed).expect("seal");
            // The limits may refuse the re-encoded frame (other encoding, larger): only sizes.
            let limits = VerifyOptions {
                max_frame_bytes: usize::MAX / 4,
                max_decompressed_bytes: usize::MAX / 4,
                keys: opts.keys.clone(),
            };
            let again =
                verify_with(&frame, &limits, contract).expect("a resealed snapshot verifies");
            assert_eq!(
                &again, s,
                "{encoding:?}/{compression:?} seal and verify changed it"
            );
        }
    }
}

/// Whether `s` is bounded as a shown unchecked string of at most `chars` characters (each
/// escaped to at most 10, plus the `…(N bytes)` suffix).
pub fn bounded(s: &str, chars: usize) -> bool {
    s.chars().count() <= chars * 10 + 32
}

/// What an ack sent to a peer must be: its agent id a valid id or a bounded shown string, its
/// detail bounded, a REJECTED ack carrying a reason.
pub fn check_ack(a: &pb::Ack) {
    assert!(
        is_valid_agent_id(&a.agent_id)
            || a.agent_id.is_empty()
            || bounded(&a.agent_id, SHOWN_CHARS),
        "ack echoes an unbounded agent id ({} bytes)",
        a.agent_id.len()
    );
    assert!(a.agent_id.len() <= MAX_AGENT_ID_LEN * 10 + 32);
    assert!(
        bounded(&a.detail, MAX_DETAIL_CHARS),
        "ack detail unbounded: {} chars",
        a.detail.chars().count()
    );
    if a.status == pb::AckStatus::Rejected as i32 {
        assert_ne!(a.reason, 0, "a REJECTED ack without a reason");
    }
}
