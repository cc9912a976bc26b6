#!/usr/bin/env bash
# Backfill throughput of `fleetset-agent replay` into a real aggregator on loopback (ZeroMQ),
# with the defaults of now beside the old settings in the same run, and a peer that does no
# delivery at all (pyarrow computing the same window stats and writing them to one Parquet file).
#
# 1. Generates a NAB-like CSV (`timestamp,value`, `YYYY-MM-DD HH:MM:SS`, 1-minute rows) of DAYS
#    days: DAYS x 288 five-minute windows.
# 2. new: `fleetset-agent replay` with its defaults (--max-in-flight 1024, batched framing)
#    into `fleetset-aggregator serve` with its defaults (commit every 5 s or 512 windows).
# 3. old: the same on the first OLD_DAYS days with the old settings: `--max-in-flight 64`
#    (transport.max_in_flight's default), one window framed at a time (`--rate 1000000`, which
#    frames window by window with the per-window fsyncs of before) and an aggregator that commits
#    only on its interval (`store.commit_windows` out of reach).
# 4. peer: pyarrow reads the CSV, computes count/min/max/mean/std per 5-minute window and writes
#    one Parquet file (fsynced).
# Windows/s = windows in the report / wall time of the replay process (start to the last ack).
#
# Environment:
#   DAYS (30), OLD_DAYS (2)
#   NEW_AGG_FLAGS, NEW_AGENT_FLAGS   extra flags of the "new" case (to try other settings)
#   AGENT_BIN, AGGREGATOR_BIN   binaries (default: $CARGO_TARGET_DIR/debug/…, else target/debug)
#   FLEETSET_PYTHON             Python with pyarrow (default: the tests' virtualenv, scripts/venv.sh)
#   FLEETSET_BENCH_DIR          work directory (default: /tmp/fleetset-replay-bench; wiped)
set -euo pipefail
cd "$(dirname "$0")/.."
days="${DAYS:-30}"
old_days="${OLD_DAYS:-2}"
target="${CARGO_TARGET_DIR:-$PWD/target}"
agent="${AGENT_BIN:-$target/debug/fleetset-agent}"
aggregator="${AGGREGATOR_BIN:-$target/debug/fleetset-aggregator}"
work="${FLEETSET_BENCH_DIR:-/tmp/fleetset-replay-bench}"
if [ -n "${FLEETSET_PYTHON:-}" ]; then
  python="$FLEETSET_PYTHON"
else
  source scripts/venv.sh
  python="$(fleetset_venv_python)"
fi
for b in "$agent" "$aggregator"; do
  [ -x "$b" ] || { echo "no $b: cargo build -p fleetset-agent -p fleetset-aggregator" >&2; exit 1; }
done
rm -rf "$work" && mkdir -p "$work"
export FLEETSET_TELEMETRY_LISTEN=127.0.0.1:0

# 1. The input.
"$python" - "$work" "$days" "$old_days" <<'EOF'
import sys, datetime, math
work, days, old_days = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t0 = datetime.datetime(2014, 2, 1)
for name, n in (("month.csv", days), ("old.csv", old_days)):
    with open(f"{work}/{name}", "w") as f:
        f.write("timestamp,value\n")
        for i in range(n * 1440):
            t = t0 + datetime.timedelta(minutes=i)
            f.write(f"{t:%Y-%m-%d %H:%M:%S},{50 + 30 * math.sin(i / 90) + (i * 7919 % 13):.3f}\n")
EOF

# An aggregator on loopback with `$@`; sets $agg_pid and $zmq.
start_aggregator() {
  local dir="$1"; shift
  mkdir -p "$dir"
  "$aggregator" serve --data-dir "$dir/data" --ready-file "$dir/ready.json" \
    --zmq-bind tcp://127.0.0.1:0 --zmq-pub tcp://127.0.0.1:0 --otlp-listen 127.0.0.1:0 \
    --control-listen 127.0.0.1:0 --set ingest.grpc.enabled=false "$@" 2> "$dir/aggregator.log" &
  agg_pid=$!
  for _ in $(seq 300); do [ -s "$dir/ready.json" ] && break; sleep 0.1; done
  zmq="$("$python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["zmq"])' "$dir/ready.json")"
}

# Replays `$2` into a fresh aggregator (flags `$3`), agent flags `${@:4}`; prints "windows seconds".
run_case() {
  local name="$1" csv="$2" agg_flags="$3"; shift 3
  local dir="$work/$name"
  # shellcheck disable=SC2086
  start_aggregator "$dir" $agg_flags
  local t0 t1
  t0=$(date +%s.%N)
  "$agent" replay "$csv" --agent-id "bench-$name" --state-dir "$dir/agent" --aggregator "$zmq" \
    "$@" > "$dir/report.json" 2> "$dir/agent.log"
  t1=$(date +%s.%N)
  kill -TERM "$agg_pid"; wait "$agg_pid" || true
  "$python" -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["windows"], float(sys.argv[3])-float(sys.argv[2]))' \
    "$dir/report.json" "$t0" "$t1"
}

# shellcheck disable=SC2086
read -r new_w new_s < <(run_case new "$work/month.csv" "${NEW_AGG_FLAGS:-}" ${NEW_AGENT_FLAGS:-})
read -r old_w old_s < <(run_case old "$work/old.csv" "--set store.commit_windows=100000000" \
  --max-in-flight 64 --rate 1000000)

# 4. The peer.
read -r peer_w peer_s < <("$python" - "$work" <<'EOF'
import sys, os, time
import pyarrow as pa, pyarrow.csv as pc, pyarrow.compute as pcc, pyarrow.parquet as pq
work = sys.argv[1]
t = time.time()
tab = pc.read_csv(f"{work}/month.csv", convert_options=pc.ConvertOptions(
    column_types={"timestamp": pa.timestamp("ms")}))
start = pcc.floor_temporal(tab["timestamp"], 5, "minute")
tab = tab.append_column("window_start", start)
stats = tab.group_by("window_start").aggregate(
    [("value", "count"), ("value", "min"), ("value", "max"), ("value", "mean"), ("value", "stddev", pcc.VarianceOptions(ddof=1))])
pq.write_table(stats, f"{work}/peer.parquet")
fd = os.open(f"{work}/peer.parquet", os.O_RDONLY); os.fsync(fd); os.close(fd)
print(stats.num_rows, time.time() - t)
EOF
)

rate() { "$python" -c 'import sys; print(f"{float(sys.argv[1])/float(sys.argv[2]):,.0f}")' "$1" "$2"; }
echo
echo "| case | windows | seconds | windows/s |"
echo "|---|---|---|---|"
printf '| fleetset replay, new defaults (in flight 1024, batches of 256, commits at 512 windows) | %s | %.2f | %s |\n' "$new_w" "$new_s" "$(rate "$new_w" "$new_s")"
printf '| fleetset replay, old settings (in flight 64, window by window, commits every 5 s) | %s | %.2f | %s |\n' "$old_w" "$old_s" "$(rate "$old_w" "$old_s")"
printf '| peer: pyarrow window stats of the same CSV to one Parquet file (no delivery) | %s | %.2f | %s |\n' "$peer_w" "$peer_s" "$(rate "$peer_w" "$peer_s")"
