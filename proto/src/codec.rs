//! Snapshot encodings: MessagePack (rmp-serde, named fields — seed 004's layout plus fleetset's
//! fields) and Protobuf (`pb::Snapshot`). Both carry the same values: encoding a [`Snapshot`]
//! either way and decoding it gives back an equal `Snapshot` (property-tested below).

use crate::model::{wire_std, HostInfo, Point, ProcessRecord, Snapshot, WindowStats};
use crate::pb;
use prost::Message;

/// Why a snapshot could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// MessagePack encoding failed (should not happen for a valid snapshot).
    #[error("messagepack encode: {0}")]
    MsgpackEncode(#[from] rmp_serde::encode::Error),
    /// The bytes are not a MessagePack snapshot.
    #[error("messagepack decode: {0}")]
    MsgpackDecode(#[from] rmp_serde::decode::Error),
    /// The bytes are not a Protobuf `fleetset.v1.Snapshot`.
    #[error("protobuf decode: {0}")]
    ProtobufDecode(#[from] prost::DecodeError),
    /// A Protobuf series whose `ts_ms` and `values` differ in length.
    #[error("protobuf series {metric:?}: {ts} timestamps but {values} values")]
    RaggedSeries {
        /// The metric.
        metric: String,
        /// Number of timestamps.
        ts: usize,
        /// Number of values.
        values: usize,
    },
    /// zstd compression failed.
    #[error("zstd compress: {0}")]
    Compress(std::io::Error),
    /// `ENCODING_UNSPECIFIED` or an unknown enum value.
    #[error("unknown payload encoding {0}")]
    UnknownEncoding(i32),
}

impl From<WindowStats> for pb::WindowStats {
    fn from(st: WindowStats) -> Self {
        let WindowStats {
            count,
            min,
            max,
            mean,
            std,
            first,
            last,
        } = st;
        pb::WindowStats {
            count,
            min,
            max,
            mean,
            std,
            first,
            last,
        }
    }
}

/// `std` is `None` when `count < 2` whatever the wire holds (see [`wire_std`]).
impl From<pb::WindowStats> for WindowStats {
    fn from(st: pb::WindowStats) -> Self {
        let pb::WindowStats {
            count,
            min,
            max,
            mean,
            std,
            first,
            last,
        } = st;
        WindowStats {
            count,
            min,
            max,
            mean,
            std: wire_std(count, std),
            first,
            last,
        }
    }
}

/// Encodes `snapshot` as `encoding` (MessagePack or Protobuf).
pub fn encode_snapshot(snapshot: &Snapshot, encoding: pb::Encoding) -> Result<Vec<u8>, CodecError> {
    match encoding {
        pb::Encoding::Msgpack => Ok(rmp_serde::to_vec_named(snapshot)?),
        pb::Encoding::Protobuf => Ok(to_pb(snapshot).encode_to_vec()),
        pb::Encoding::Unspecified => Err(CodecError::UnknownEncoding(encoding as i32)),
    }
}

/// Decodes a snapshot from `bytes` in `encoding`. Does not validate it (see
/// [`Snapshot::validate`]).
pub fn decode_snapshot(bytes: &[u8], encoding: pb::Encoding) -> Result<Snapshot, CodecError> {
    match encoding {
        pb::Encoding::Msgpack => Ok(rmp_serde::from_slice(bytes)?),
        pb::Encoding::Protobuf => from_pb(pb::Snapshot::decode(bytes)?),
        pb::Encoding::Unspecified => Err(CodecError::UnknownEncoding(encoding as i32)),
    }
}

/// Converts the model to its Protobuf message (one `MetricSeries` per `data` key, in name order).
pub fn to_pb(s: &Snapshot) -> pb::Snapshot {
    let series = s
        .data
        .iter()
        .map(|(name, points)| pb::MetricSeries {
            name: name.clone(),
            ts_ms: points.iter().map(|p| p.ts_ms).collect(),
            values: points.iter().map(|p| p.value).collect(),
            stats: s.stats.get(name).copied().map(pb::WindowStats::from),
        })
        .collect();
    pb::Snapshot {
        agent_id: s.agent_id.clone(),
        start: s.start,
        end: s.end,
        seq: s.seq,
        host: Some(pb::HostInfo {
            hostname: s.host.hostname.clone(),
            os: s.host.os.clone(),
            kernel: s.host.kernel.clone(),
            cpu_count: s.host.cpu_count,
            memory_total_mb: s.host.memory_total_mb,
            agent_version: s.host.agent_version.clone(),
            labels: s.host.labels.clone().into_iter().collect(),
        }),
        sample_interval_ms: s.sample_interval_ms,
        series,
        processes: s
            .processes
            .iter()
            .map(|p| pb::ProcessRecord {
                pid: p.pid,
                name_hash: p.name_hash.clone(),
                rss_bytes: p.rss_bytes,
                virtual_memory_bytes: p.virtual_memory_bytes,
                cpu_percent: p.cpu_percent,
                disk_read_bytes: p.disk_read_bytes,
                disk_write_bytes: p.disk_write_bytes,
                name: p.name.clone(),
            })
            .collect(),
    }
}

/// Converts a Protobuf snapshot to the model; fails on a ragged series.
pub fn from_pb(m: pb::Snapshot) -> Result<Snapshot, CodecError> {
    let mut out = Snapshot {
        agent_id: m.agent_id,
        start: m.start,
        end: m.end,
        seq: m.seq,
        sample_interval_ms: m.sample_interval_ms,
        ..Default::default()
    };
    if let Some(h) = m.host {
        out.host = HostInfo {
            hostname: h.hostname,
            os: h.os,
            kernel: h.kernel,
            cpu_count: h.cpu_count,
            memory_total_mb: h.memory_total_mb,
            agent_version: h.agent_version,
            labels: h.labels.into_iter().collect(),
        };
    }
    for series in m.series {
        if series.ts_ms.len() != series.values.len() {
            return Err(CodecError::RaggedSeries {
                metric: series.name,
                ts: series.ts_ms.len(),
                values: series.values.len(),
            });
        }
        if let Some(st) = series.stats {
            out.stats.insert(series.name.clone(), WindowStats::from(st));
        }
        let points = series
            .ts_ms
            .into_iter()
            .zip(series.values)
            .map(|(ts_ms, value)| Point { ts_ms, value })
            .collect();
        out.data.insert(series.name, points);
    }
    out.processes = m
        .processes
        .into_iter()
        .map(|p| ProcessRecord {
            pid: p.pid,
            name_hash: p.name_hash,
            rss_bytes: p.rss_bytes,
            virtual_memory_bytes: p.virtual_memory_bytes,
            cpu_percent: p.cpu_percent,
            disk_read_bytes: p.disk_read_bytes,
            disk_write_bytes: p.disk_write_bytes,
            name: p.name,
        })
        .collect();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::{btree_map, vec};
    use proptest::prelude::*;

    fn finite() -> impl Strategy<Value = f64> {
        prop_oneof![
            -1e12f64..1e12,
            Just(0.0),
            Just(-0.0),
            Just(f64::MAX),
            Just(f64::MIN_POSITIVE)
        ]
    }

    fn stats() -> impl Strategy<Value = WindowStats> {
        (prop_oneof![0u64..3, any::<u64>()], vec(finite(), 6)).prop_map(|(count, v)| WindowStats {
            count,
            min: v[0],
            max: v[1],
            mean: v[2],
            std: (count >= 2).then_some(v[3]),
            first: v[4],
            last: v[5],
        })
    }

    fn metric() -> impl Strategy<Value = (Vec<Point>, Option<WindowStats>)> {
        (
            vec((0i64..1 << 53, finite()), 0..80),
            proptest::option::of(stats()),
        )
            .prop_map(|(pts, st)| {
                let pts = pts
                    .into_iter()
                    .map(|(ts_ms, value)| Point { ts_ms, value })
                    .collect();
                (pts, st)
            })
    }

    fn process() -> impl Strategy<Value = ProcessRecord> {
        (
            any::<u32>(),
            "[0-9a-f]{16}",
            any::<u64>(),
            any::<u64>(),
            finite(),
            any::<u64>(),
            any::<u64>(),
            "[a-z]{0,8}",
        )
            .prop_map(|(pid, name_hash, rss, vm, cpu, r, w, name)| ProcessRecord {
                pid,
                name_hash,
                rss_bytes: rss,
                virtual_memory_bytes: vm,
                cpu_percent: cpu,
                disk_read_bytes: r,
                disk_write_bytes: w,
                name,
            })
    }

    fn snapshot() -> impl Strategy<Value = Snapshot> {
        (
            "[a-z0-9-]{1,40}",
            any::<i64>(),
            any::<i64>(),
            any::<u64>(),
            btree_map("[a-z][a-z0-9_]{0,20}", metric(), 0..20),
            vec(process(), 0..12),
            btree_map("[a-z]{1,8}", "[ -~]{0,12}", 0..4),
            ("[ -~]{0,20}", any::<u32>(), any::<u64>(), any::<u64>()),
        )
            .prop_map(
                |(
                    agent_id,
                    start,
                    end,
                    seq,
                    metrics,
                    processes,
                    labels,
                    (os, cpus, mem, interval),
                )| {
                    let mut s = Snapshot {
                        agent_id,
                        start,
                        end,
                        seq,
                        sample_interval_ms: interval,
                        processes,
                        host: HostInfo {
                            hostname: "h".into(),
                            os: os.clone(),
                            kernel: os,
                            cpu_count: cpus,
                            memory_total_mb: mem,
                            agent_version: "0.1.0".into(),
                            labels,
                        },
                        ..Default::default()
                    };
                    for (name, (points, st)) in metrics {
                        if let Some(st) = st {
                            s.stats.insert(name.clone(), st);
                        }
                        s.data.insert(name, points);
                    }
                    s
                },
            )
    }

    proptest! {
        #[test]
        fn msgpack_and_protobuf_decode_to_identical_values(s in snapshot()) {
            let via_msgpack = decode_snapshot(&encode_snapshot(&s, pb::Encoding::Msgpack).unwrap(), pb::Encoding::Msgpack).unwrap();
            let via_protobuf = decode_snapshot(&encode_snapshot(&s, pb::Encoding::Protobuf).unwrap(), pb::Encoding::Protobuf).unwrap();
            prop_assert_eq!(&via_msgpack, &s);
            prop_assert_eq!(&via_protobuf, &s);
            // Bit-for-bit, not just ==: -0.0 and 0.0 compare equal but must survive as sent.
            for (name, pts) in &s.data {
                for (a, b) in pts.iter().zip(&via_protobuf.data[name]) {
                    prop_assert_eq!(a.value.to_bits(), b.value.to_bits());
                }
                for (a, b) in pts.iter().zip(&via_msgpack.data[name]) {
                    prop_assert_eq!(a.value.to_bits(), b.value.to_bits());
                }
            }
        }
    }

    /// Seed 004's consumers decode `{agent_id, start, end, data{metric: [[f64, f64]]}}` and
    /// ignore the rest: our MessagePack must still decode into that shape.
    #[test]
    fn msgpack_is_a_superset_of_seed_004_layout() {
        #[derive(serde::Deserialize)]
        struct Seed004 {
            agent_id: String,
            start: i64,
            end: i64,
            data: std::collections::BTreeMap<String, Vec<[f64; 2]>>,
        }
        let mut s = Snapshot {
            agent_id: "a1".into(),
            start: 300_000,
            end: 600_000,
            seq: 7,
            ..Default::default()
        };
        s.data.insert(
            "cpu_percent".into(),
            vec![Point {
                ts_ms: 300_000,
                value: 45.2,
            }],
        );
        let old: Seed004 =
            rmp_serde::from_slice(&encode_snapshot(&s, pb::Encoding::Msgpack).unwrap()).unwrap();
        assert_eq!(
            (old.agent_id.as_str(), old.start, old.end),
            ("a1", 300_000, 600_000)
        );
        assert_eq!(old.data["cpu_percent"], vec![[300_000.0, 45.2]]);
    }

    /// A window of one sample has no std: it decodes as `None` from both encodings, from the
    /// bytes today's encoders write and from those of encoders that predate `optional std`
    /// (MessagePack 0.0; Protobuf without field 5), which stay the bytes written on the wire.
    #[test]
    fn undefined_std_is_none_and_the_wire_is_unchanged() {
        #[derive(serde::Deserialize)]
        struct OldStats {
            std: f64,
        }
        let one = WindowStats::from_values(&[4.0]).unwrap();
        let two = WindowStats::from_values(&[4.0, 4.0]).unwrap();
        assert_eq!((one.std, two.std), (None, Some(0.0)));
        // MessagePack: a number, as older decoders expect; read back as None / Some(0).
        let bytes = rmp_serde::to_vec_named(&one).unwrap();
        assert_eq!(rmp_serde::from_slice::<OldStats>(&bytes).unwrap().std, 0.0);
        assert_eq!(rmp_serde::from_slice::<WindowStats>(&bytes).unwrap(), one);
        let bytes = rmp_serde::to_vec_named(&two).unwrap();
        assert_eq!(rmp_serde::from_slice::<WindowStats>(&bytes).unwrap(), two);
        // A count of 1 with a stray std on the wire is still None.
        let stray = rmp_serde::to_vec_named(&serde_json::json!({
            "count": 1, "min": 4.0, "max": 4.0, "mean": 4.0, "std": 2.5, "first": 4.0, "last": 4.0
        }))
        .unwrap();
        assert_eq!(rmp_serde::from_slice::<WindowStats>(&stray).unwrap(), one);
        // Protobuf: no field 5 for one sample (what proto3 wrote for the old 0.0); an old
        // encoder's omitted 0.0 with count 2 reads as Some(0.0).
        let encoded = pb::WindowStats::from(one).encode_to_vec();
        // count (tag + varint) and five tagged doubles; a std field would add 9 bytes.
        assert_eq!(encoded.len(), 2 + 5 * 9);
        assert_eq!(
            WindowStats::from(pb::WindowStats::decode(&encoded[..]).unwrap()),
            one
        );
        let old_two = pb::WindowStats {
            std: None,
            ..pb::WindowStats::from(two)
        };
        assert_eq!(WindowStats::from(old_two), two);
    }

    #[test]
    fn fractional_timestamps_are_rejected() {
        let bytes = rmp_serde::to_vec_named(&serde_json::json!({
            "agent_id": "a", "start": 0, "end": 10, "data": {"x": [[1.5, 2.0]]}
        }))
        .unwrap();
        let err = decode_snapshot(&bytes, pb::Encoding::Msgpack).unwrap_err();
        assert!(
            err.to_string().contains("integer number of milliseconds"),
            "{err}"
        );
    }
}
