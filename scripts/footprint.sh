#!/usr/bin/env bash
# Agent footprint, side by side with collectd on the same host in the same run:
# fleetset-agent (1 s samples, 60 s windows, process scan every 15 s, sending to a local
# aggregator over ZeroMQ) vs collectd 5 (Interval 1: cpu, memory, swap, load, disk, interface,
# processes, fhcount, sending over its network plugin). Reports peak RSS (VmHWM) and CPU
# (utime + stime over wall time) of each, and their ratio.
#   DURATION  seconds to run (default 120)
#   TLS=1     the agent sends over gRPC with TLS and a client certificate (mTLS) instead of
#             ZeroMQ (certificates made with the openssl CLI in the scratch directory)
#   CURVE=1   the ZeroMQ link with CURVE (keys made by `fleetset-aggregator pki` in the scratch
#             directory)
#   CONTROL=1 the agent also reports to the aggregator's control plane over OpAMP (every 5 s)
#   AGGREGATOR_BIN, AGENT_BIN  use these binaries instead of building them (the aggregator's
#             own footprint is not measured, so a debug build does; the agent should be the
#             `agent` profile's)
# Needs collectd (Debian: apt-get install collectd-core). Builds the release binaries and the
# agent in its size-optimized `agent` profile (as shipped).
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${DURATION:-120}"
command -v collectd >/dev/null || { echo "collectd not found: apt-get install collectd-core" >&2; exit 1; }
aggregator_bin="${AGGREGATOR_BIN:-${CARGO_TARGET_DIR:-target}/release/fleetset-aggregator}"
agent_bin="${AGENT_BIN:-${CARGO_TARGET_DIR:-target}/agent/fleetset-agent}"
[ -n "${AGGREGATOR_BIN:-}" ] || cargo build --release --bins -q
# The agent as shipped: the size-optimized `agent` profile (Cargo.toml).
[ -n "${AGENT_BIN:-}" ] || cargo build --profile agent -p fleetset-agent -q
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

tls_server=() tls_agent=()
if [ "${TLS:-0}" = 1 ]; then
  pki="$work/pki"; mkdir -p "$pki"
  ossl() { openssl "$@" 2>/dev/null; }
  ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=footprint-ca \
    -keyout "$pki/ca.key" -out "$pki/ca.pem"
  issue() { # name SAN
    ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" -keyout "$pki/$1.key" -out "$pki/$1.csr"
    ossl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -days 1 -out "$pki/$1.pem" \
      -extfile <(printf 'subjectAltName=%s\n' "$2")
  }
  issue server "DNS:localhost,IP:127.0.0.1"
  issue agent "URI:spiffe://fleetset/agent/footprint"
  tls_server=(--set "security.tls.cert_file=$pki/server.pem" --set "security.tls.key_file=$pki/server.key"
    --set "security.tls.client_ca_file=$pki/ca.pem")
  tls_agent=(--agent-id footprint --transport grpc --set "transport.tls.ca_file=$pki/ca.pem"
    --set "transport.tls.cert_file=$pki/agent.pem" --set "transport.tls.key_file=$pki/agent.key")
fi

curve_server=() curve_agent=()
if [ "${CURVE:-0}" = 1 ]; then
  keys="$work/keys"
  "$aggregator_bin" pki init --dir "$keys" 2>/dev/null
  "$aggregator_bin" pki issue-agent --dir "$keys" footprint 2>/dev/null
  a="$keys/agents/footprint"
  curve_server=(--set "security.curve.secret_file=$keys/curve_server.secret"
    --set "security.curve.allow_file=$keys/curve_allow.txt")
  curve_agent=(--agent-id footprint --set "transport.curve.server_public_file=$a/curve_server.public"
    --set "transport.curve.public_file=$a/curve_client.public" --set "transport.curve.secret_file=$a/curve_client.secret")
fi

"$aggregator_bin" serve --data-dir "$work/data" --zmq-bind tcp://127.0.0.1:0 --zmq-pub tcp://127.0.0.1:0 \
  --grpc-listen 127.0.0.1:0 --otlp-listen 127.0.0.1:0 --control-listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --ready-file "$work/ready.json" \
  "${tls_server[@]}" "${curve_server[@]}" 2>"$work/aggregator.log" &
for _ in $(seq 100); do [ -s "$work/ready.json" ] && break; sleep 0.1; done
key=zmq; [ "${TLS:-0}" = 1 ] && key=grpc
endpoint="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$work/ready.json" "$key")"
[ "${TLS:-0}" = 1 ] && endpoint="https://$endpoint"
control_agent=()
if [ "${CONTROL:-0}" = 1 ]; then
  control="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["control"])' "$work/ready.json")"
  scheme=http; [ "${TLS:-0}" = 1 ] && scheme=https
  control_agent=(--set "control.endpoint=$scheme://$control/v1/opamp" --set control.poll_interval=5s)
fi

"$agent_bin" run --aggregator "$endpoint" --state-dir "$work/agent" --window 60s \
  --sample-interval 1s --metrics-listen 127.0.0.1:0 "${tls_agent[@]}" "${curve_agent[@]}" \
  "${control_agent[@]}" 2>"$work/agent.log" &
agent=$!

plugins=/usr/lib/collectd
cat > "$work/collectd.conf" <<CONF
Interval 1
BaseDir "$work"
PIDFile "$work/collectd.pid"
PluginDir "$plugins"
TypesDB "/usr/share/collectd/types.db"
LoadPlugin cpu
LoadPlugin memory
LoadPlugin swap
LoadPlugin load
LoadPlugin disk
LoadPlugin interface
LoadPlugin processes
LoadPlugin fhcount
LoadPlugin network
<Plugin network>
  Server "127.0.0.1" "25826"
</Plugin>
CONF
collectd -f -C "$work/collectd.conf" >"$work/collectd.log" 2>&1 &
collectd=$!

sleep "$duration"
hz=$(getconf CLK_TCK)
measure() { # pid -> "rss_kb cpu_percent"
  local pid=$1 hwm ticks
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  echo "$hwm $(python3 -c "print(f'{100*$ticks/$hz/$duration:.3f}')")"
}
read -r a_rss a_cpu < <(measure $agent)
read -r c_rss c_cpu < <(measure $collectd)
windows=$(grep -c "frame acked" "$work/agent.log" || true)
printf '%-16s %12s %10s\n' process "peak RSS KiB" "CPU %"
printf '%-16s %12s %10s\n' fleetset-agent "$a_rss" "$a_cpu"
printf '%-16s %12s %10s\n' collectd "$c_rss" "$c_cpu"
python3 -c "print(f'ratio agent/collectd: RSS {$a_rss/$c_rss:.2f}x, CPU {($a_cpu/$c_cpu) if $c_cpu else float(\"nan\"):.2f}x')"
echo "duration ${duration}s, agent windows acked: $windows"
