//! The wire formats of streamed windows (seed 000's `StreamFormat`: JSON Lines, MessagePack,
//! Protobuf), shared by the WebSocket `/v1/stream` and `export --stream` (README "Streaming
//! windows (WebSocket, FIFO)" is the consumer contract):
//!
//! - `jsonlines`: one JSON object per window, a text message: `agent_id`, `seq`, `start`, `end`
//!   (window bounds, Unix ms), `historical`, `received_at_us` (Unix µs, 0 for history),
//!   `payload_sha256` (hex), `labels` {key: value}, `data` {metric: [[ts_ms, value], …]} (ts_ms
//!   an integer) and `stats` {metric: {count, min, max, mean, std, first, last}} (`std` null
//!   when count < 2; a non-finite value is null); a lag notice is `{"lag": <windows skipped>}`.
//! - `msgpack`: one MessagePack map per window, a binary message: the snapshot's named fields in
//!   seed 004's layout (`fleetset_proto::Snapshot`: `agent_id`, `start`, `end`,
//!   `data` {metric: [[ts_ms as f64, value], …]}, `seq`, `host`, `sample_interval_ms`, `stats`,
//!   `processes`) plus `historical`, `received_at_us` and `payload_sha256` (hex string); a lag
//!   notice is the map `{"lag": n}`.
//! - `protobuf`: one encoded `fleetset.v1.SubscribeResponse` per message, binary (a lag notice
//!   is its `lag` event) — exactly what gRPC `Subscribe` sends.
//!
//! On a byte stream (a FIFO, stdout) messages are framed ([`frame`]): a JSON Lines message is
//! followed by `\n` (JSON never contains a raw newline), a binary one is preceded by its length
//! as a 4-byte big-endian unsigned integer.

use super::subscription::{Item, Window};
use fleetset_proto::{Snapshot, WindowStats};
use prost::Message as _;
use serde::Serialize;
use std::collections::BTreeMap;

/// The format of a stream (`format=` on `/v1/stream`, `--format` of `export --stream`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// JSON, one object per text message (per line on a FIFO).
    #[default]
    Jsonlines,
    /// MessagePack, one map per binary message.
    Msgpack,
    /// Protobuf `fleetset.v1.SubscribeResponse`, one per binary message.
    Protobuf,
}

impl std::str::FromStr for Format {
    type Err = String;
    /// `jsonlines` (or `jsonl`, `json`), `msgpack`, `protobuf`. Errors name the value.
    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "jsonlines" | "jsonl" | "json" => Ok(Format::Jsonlines),
            "msgpack" => Ok(Format::Msgpack),
            "protobuf" => Ok(Format::Protobuf),
            _ => Err(format!(
                "format {s:?} is not one of jsonlines, msgpack, protobuf"
            )),
        }
    }
}

/// One encoded message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A UTF-8 text message (`jsonlines`).
    Text(String),
    /// A binary message (`msgpack`, `protobuf`).
    Binary(Vec<u8>),
}

/// A window's statistics in JSON (`std` null when undefined): the stream's `stats` values and
/// the web console's.
#[derive(Debug, Serialize)]
pub(crate) struct JsonStats {
    pub(crate) count: u64,
    pub(crate) min: f64,
    pub(crate) max: f64,
    pub(crate) mean: f64,
    pub(crate) std: Option<f64>,
    pub(crate) first: f64,
    pub(crate) last: f64,
}

impl From<&WindowStats> for JsonStats {
    fn from(s: &WindowStats) -> JsonStats {
        JsonStats {
            count: s.count,
            min: s.min,
            max: s.max,
            mean: s.mean,
            std: s.std,
            first: s.first,
            last: s.last,
        }
    }
}

/// A window in JSON (module docs).
#[derive(Serialize)]
struct JsonWindow<'a> {
    agent_id: &'a str,
    seq: u64,
    start: i64,
    end: i64,
    historical: bool,
    received_at_us: i64,
    payload_sha256: String,
    labels: &'a BTreeMap<String, String>,
    data: BTreeMap<&'a str, Vec<(i64, f64)>>,
    stats: BTreeMap<&'a str, JsonStats>,
}

/// A window in MessagePack: the snapshot's fields and the envelope (module docs).
#[derive(Serialize)]
struct PackWindow<'a> {
    #[serde(flatten)]
    snapshot: &'a Snapshot,
    historical: bool,
    received_at_us: i64,
    payload_sha256: String,
}

/// A lag notice in JSON and MessagePack.
#[derive(Serialize)]
struct Lag {
    lag: u64,
}

fn json_window(w: &Window) -> JsonWindow<'_> {
    let s = &w.snapshot;
    JsonWindow {
        agent_id: &s.agent_id,
        seq: s.seq,
        start: s.start,
        end: s.end,
        historical: w.historical,
        received_at_us: w.received_at_us,
        payload_sha256: hex::encode(&w.payload_sha256),
        labels: &s.host.labels,
        data: s
            .data
            .iter()
            .map(|(m, pts)| (m.as_str(), pts.iter().map(|p| (p.ts_ms, p.value)).collect()))
            .collect(),
        stats: s
            .stats
            .iter()
            .map(|(m, st)| (m.as_str(), st.into()))
            .collect(),
    }
}

impl Format {
    /// `item` as one message of this format. Errors: MessagePack encoding failed (not expected
    /// for a decoded snapshot; the caller drops the message and says so).
    pub fn encode(self, item: &Item) -> anyhow::Result<Message> {
        Ok(match (self, item) {
            (Format::Jsonlines, Item::Lag(n)) => {
                Message::Text(serde_json::to_string(&Lag { lag: *n })?)
            }
            (Format::Jsonlines, Item::Window(w)) => {
                Message::Text(serde_json::to_string(&json_window(w))?)
            }
            (Format::Msgpack, Item::Lag(n)) => {
                Message::Binary(rmp_serde::to_vec_named(&Lag { lag: *n })?)
            }
            (Format::Msgpack, Item::Window(w)) => {
                Message::Binary(rmp_serde::to_vec_named(&PackWindow {
                    snapshot: &w.snapshot,
                    historical: w.historical,
                    received_at_us: w.received_at_us,
                    payload_sha256: hex::encode(&w.payload_sha256),
                })?)
            }
            (Format::Protobuf, item) => Message::Binary(item.to_pb().encode_to_vec()),
        })
    }
}

/// `message` framed for a byte stream (module docs): text + `\n`, or a 4-byte big-endian length
/// + the bytes. Errors: a binary message of 4 GiB or more (the prefix cannot hold its length).
pub fn frame(message: Message) -> anyhow::Result<Vec<u8>> {
    match message {
        Message::Text(t) => {
            let mut out = t.into_bytes();
            out.push(b'\n');
            Ok(out)
        }
        Message::Binary(b) => {
            let len = u32::try_from(b.len())
                .map_err(|_| anyhow::anyhow!("a {}-byte message is too long to frame", b.len()))?;
            let mut out = Vec::with_capacity(b.len().saturating_add(4));
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&b);
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use fleetset_proto::{pb, Point};

    fn window() -> Item {
        let mut s = Snapshot {
            agent_id: "a1".into(),
            seq: 3,
            start: 60_000,
            end: 120_000,
            ..Default::default()
        };
        s.host.labels.insert("site".into(), "eu-1".into());
        s.data.insert(
            "cpu_percent".into(),
            vec![Point {
                ts_ms: 60_500,
                value: 12.5,
            }],
        );
        s.stats.insert(
            "cpu_percent".into(),
            WindowStats::from_values(&[12.5]).unwrap(),
        );
        Item::Window(Box::new(Window {
            snapshot: s,
            historical: false,
            received_at_us: 61_000_000,
            payload_sha256: vec![0xab; 32],
            encoding: pb::Encoding::Msgpack,
            frame_payload: Bytes::new(),
        }))
    }

    #[test]
    fn jsonlines_is_the_documented_object() {
        let Message::Text(t) = Format::Jsonlines.encode(&window()).unwrap() else {
            panic!()
        };
        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "agent_id": "a1", "seq": 3, "start": 60_000, "end": 120_000,
                "historical": false, "received_at_us": 61_000_000,
                "payload_sha256": "ab".repeat(32), "labels": {"site": "eu-1"},
                "data": {"cpu_percent": [[60_500, 12.5]]},
                "stats": {"cpu_percent": {"count": 1, "min": 12.5, "max": 12.5, "mean": 12.5,
                          "std": null, "first": 12.5, "last": 12.5}},
            })
        );
        assert_eq!(
            Format::Jsonlines.encode(&Item::Lag(4)).unwrap(),
            Message::Text(r#"{"lag":4}"#.into())
        );
    }

    #[test]
    fn msgpack_is_the_snapshot_layout_plus_the_envelope() {
        let Message::Binary(b) = Format::Msgpack.encode(&window()).unwrap() else {
            panic!()
        };
        // A seed-004 reader that ignores unknown fields reads the snapshot back.
        let s: Snapshot = rmp_serde::from_slice(&b).unwrap();
        let Item::Window(w) = window() else { panic!() };
        assert_eq!(s, w.snapshot);
        let v: serde_json::Value = rmp_serde::from_slice(&b).unwrap();
        assert_eq!(v["historical"], false);
        assert_eq!(v["payload_sha256"], "ab".repeat(32));
        assert_eq!(v["received_at_us"], 61_000_000);
    }

    #[test]
    fn protobuf_is_a_subscribe_response_and_frames_are_length_prefixed() {
        let Message::Binary(b) = Format::Protobuf.encode(&window()).unwrap() else {
            panic!()
        };
        let r = pb::SubscribeResponse::decode(b.as_slice()).unwrap();
        assert_eq!(Item::from_pb(r).unwrap(), window());
        let framed = frame(Message::Binary(b.clone())).unwrap();
        assert_eq!(&framed[..4], (b.len() as u32).to_be_bytes());
        assert_eq!(&framed[4..], b.as_slice());
        assert_eq!(frame(Message::Text("{}".into())).unwrap(), b"{}\n");
        assert!("xml".parse::<Format>().unwrap_err().contains("xml"));
    }
}
