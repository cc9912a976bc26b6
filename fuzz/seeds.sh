#!/usr/bin/env bash
# Regenerates the checked-in seed corpora in fuzz/seeds/<target>/ (docs/fuzzing.md):
# real frames from the agent's spool (replay of a few NAB rows in each encoding, with and without
# zstd, signed and not, against an aggregator that is not there), cut into each target's input
# layout; OTLP requests of every point kind built with the opentelemetry-proto Python classes;
# CSV heads of tests/data/nab.
# Needs the debug agent binary (cargo build -p fleetset-agent) and the test virtualenv.
#   CARGO_TARGET_DIR   where the agent binary is (default: target)
#   FLEETSET_PYTHON    python with opentelemetry-proto (default: scripts/venv.sh's)
set -euo pipefail
cd "$(dirname "$0")/.."
agent="${CARGO_TARGET_DIR:-target}/debug/fleetset-agent"
if [[ -z "${FLEETSET_PYTHON:-}" ]]; then
  source scripts/venv.sh
  FLEETSET_PYTHON="$(fleetset_venv_python)"
fi
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
head -120 tests/data/nab/ec2_cpu_utilization_24ae8d.csv > "$scratch/cpu.csv"
for enc in msgpack protobuf; do
  for comp in none zstd; do
    for key in "" 00112233445566778899aabbccddeeff; do
      dir="$scratch/spool-$enc-$comp-${key:+signed}"
      args=(replay "$scratch/cpu.csv" --agent-id "fuzz-seed-$enc-$comp" --state-dir "$dir"
        --aggregator tcp://127.0.0.1:9 --encoding "$enc" --set "transport.compression=$comp"
        --set window.length=2h --set telemetry.listen=127.0.0.1:0)
      [[ -n "$key" ]] && args+=(--set "transport.hmac_key_hex=$key")
      # Nothing acks: the agent is stopped once it has spooled its windows.
      timeout -s INT 5 "$agent" "${args[@]}" > /dev/null 2>&1 || true
    done
  done
done
rm -rf fuzz/seeds
"$FLEETSET_PYTHON" - "$scratch" <<'PY'
import glob, os, struct, sys
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m
from opentelemetry.proto.common.v1.common_pb2 import KeyValue, AnyValue

scratch = sys.argv[1]
def put(target, name, data):
    os.makedirs(f"fuzz/seeds/{target}", exist_ok=True)
    with open(f"fuzz/seeds/{target}/{name}", "wb") as f:
        f.write(data)

def varint(b, i):
    n = s = 0
    while True:
        c = b[i]; i += 1; n |= (c & 0x7F) << s; s += 7
        if c < 0x80: return n, i

def split_frame(b):
    """(header, payload) of an encoded fleetset.v1.Frame (fields 1 and 2)."""
    out, i = {}, 0
    while i < len(b):
        tag, i = varint(b, i); n, i = varint(b, i)
        out[tag >> 3] = b[i:i + n]; i += n
    return out.get(1, b""), out.get(2, b"")

u16 = lambda n: struct.pack("<H", n)
for d in sorted(glob.glob(f"{scratch}/spool-*")):
    tag = os.path.basename(d)[len("spool-"):].rstrip("-")
    signed = tag.endswith("signed")
    enc = 1 if "msgpack" in tag else 2
    for path in sorted(glob.glob(f"{d}/spool/*.frame"))[:2]:
        frame = open(path, "rb").read()
        header, payload = split_frame(frame)
        seq = os.path.basename(path).split(".")[0][-2:]
        name = f"{tag}-{seq}"
        sig = 0x10 if signed else 0
        put("frame_verify", f"{name}-grpc", bytes([0 | sig, 0]) + frame)
        put("frame_verify", f"{name}-parts", bytes([1 | sig, 0]) + u16(len(header)) + header + payload)
        put("grpc_ingest", name, b"\x00" + frame)
        put("zmq_ingest", name, b"\x03" + u16(5) + b"peer1" + u16(len(header)) + header + payload)
        put("spool_reader", name, b"\x00" + frame)
        if "none" in tag:
            put("frame_verify", f"{name}-sealed", bytes([3 | sig, 0, enc]) + payload)
            put("frame_verify", f"{name}-sealed-zstd", bytes([3 | 0x40 | sig, 0, enc]) + payload)
            put("frame_verify", f"{name}-derived", bytes([2 | sig, 0, enc, 0]) + u16(1) + payload)

def kv(k, v):
    return KeyValue(key=k, value=AnyValue(string_value=v))
t = 1_700_000_000_000_000_000
attrs = [kv("host.name", "web-1"), kv("service.name", "api"), kv("os.type", "linux")]
pt = lambda v, **a: m.NumberDataPoint(time_unix_nano=t, start_time_unix_nano=t - 10**9, as_double=v,
                                      attributes=[kv(k, x) for k, x in a.items()])
metrics = [
    m.Metric(name="system.cpu.utilization", gauge=m.Gauge(data_points=[pt(0.5, cpu="0", state="user")])),
    m.Metric(name="http.server.requests", sum=m.Sum(aggregation_temporality=2, is_monotonic=True,
             data_points=[m.NumberDataPoint(time_unix_nano=t, as_int=42)])),
    m.Metric(name="http.server.duration", histogram=m.Histogram(aggregation_temporality=2, data_points=[
        m.HistogramDataPoint(time_unix_nano=t, count=6, sum=12.5, min=0.1, max=9.0,
                             bucket_counts=[1, 2, 3], explicit_bounds=[1.0, 2.5])])),
    m.Metric(name="rpc.latency", exponential_histogram=m.ExponentialHistogram(data_points=[
        m.ExponentialHistogramDataPoint(time_unix_nano=t, count=10, sum=30.0, scale=2, zero_count=1,
            positive=m.ExponentialHistogramDataPoint.Buckets(offset=1, bucket_counts=[2, 3, 4]))])),
    m.Metric(name="gc.pause", summary=m.Summary(data_points=[m.SummaryDataPoint(time_unix_nano=t, count=3, sum=1.5,
        quantile_values=[m.SummaryDataPoint.ValueAtQuantile(quantile=0.99, value=0.9)])])),
]
req = ExportMetricsServiceRequest(resource_metrics=[m.ResourceMetrics(
    resource={"attributes": attrs}, scope_metrics=[m.ScopeMetrics(metrics=metrics)])])
put("otlp_mapping", "all-kinds", req.SerializeToString())
for i, metric in enumerate(metrics):
    one = ExportMetricsServiceRequest(resource_metrics=[m.ResourceMetrics(
        resource={"attributes": attrs}, scope_metrics=[m.ScopeMetrics(metrics=[metric])])])
    put("otlp_mapping", f"kind-{i}", one.SerializeToString())

for path in sorted(glob.glob("tests/data/nab/*.csv"))[:4]:
    lines = open(path, "rb").read().splitlines(keepends=True)[:12]
    put("replay_csv", os.path.basename(path)[:-4], b"\x00" + b"".join(lines))
put("replay_csv", "semicolon-ms", b"\x05timestamp;value;b\n1392388200000;1.5;2\n1392388260000;x;3\n")
put("replay_csv", "format", b"\x10timestamp,value,b\n14/02/2014 14:30,1,2\n14/02/2014 14:35,2,3\n")
PY
find fuzz/seeds -type f | wc -l
du -sh fuzz/seeds
