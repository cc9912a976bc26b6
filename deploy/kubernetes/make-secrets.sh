#!/usr/bin/env bash
# Prints the two Secrets deploy/kubernetes mounts, as YAML for `kubectl apply -f -`, making
# the key material first where PKI_DIR lacks it (existing files are reused, never replaced):
#   fleetset-aggregator-pki  the aggregator's server certificate and key, the fleet CA (client
#                            CA), CURVE server secret and allow file, token file
#                            (`fleetset-aggregator pki init`, for the Service's DNS names)
#   fleetset-agent           for every agent pod: the fleet CA, one fleet client certificate
#                            signed by it (no per-agent SPIFFE SAN: a DaemonSet has one Secret
#                            for all nodes, see deploy/README.md), a certificate for the agents'
#                            own /metrics (a CA of its own, `pki init` in PKI_DIR/agent-metrics)
#                            and the SHA-256 of a `metrics` token (`pki issue-token`, token in
#                            PKI_DIR/k8s-agents/metrics.token for Prometheus)
# PKI_DIR keeps ca.key and master.key: keep it off the cluster.
#
#   make-secrets.sh PKI_DIR [NAMESPACE] | kubectl apply -f -
#   FLEETSET_AGGREGATOR   the fleetset-aggregator binary (default: the one on PATH)
# Needs: fleetset-aggregator, openssl, sha256sum, kubectl (client only; no cluster is contacted).
set -euo pipefail
if [[ $# -lt 1 || $# -gt 2 ]]; then
  echo "usage: $0 PKI_DIR [NAMESPACE] | kubectl apply -f -" >&2
  exit 2
fi
pki="$1"
ns="${2:-fleetset}"
agg="${FLEETSET_AGGREGATOR:-fleetset-aggregator}"
svc=fleetset-aggregator
umask 077

if [[ ! -e "$pki/ca.pem" ]]; then
  "$agg" pki init --dir "$pki" --server-name "$svc.$ns.svc" \
    --server-name "$svc.$ns.svc.cluster.local" --server-name "$svc" >&2
fi
if [[ ! -e "$pki/agent-metrics/server.pem" ]]; then
  "$agg" pki init --dir "$pki/agent-metrics" --server-name fleetset-agent >&2
fi
k="$pki/k8s-agents"
mkdir -p "$k"
if [[ ! -e "$k/agent.pem" ]]; then
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj /CN=fleetset-k8s-agents -keyout "$k/agent.key" -out "$k/agent.csr" 2>/dev/null
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' >"$k/agent.ext"
  openssl x509 -req -in "$k/agent.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 365 -extfile "$k/agent.ext" \
    -out "$k/agent.pem" 2>/dev/null
  rm -f "$k/agent.csr" "$k/agent.ext"
fi
if [[ ! -s "$k/metrics.token" ]]; then
  "$agg" pki issue-token --dir "$pki" --scope metrics --name k8s-agents-metrics >"$k/metrics.token"
fi
token_sha256="$(tr -d '\n' <"$k/metrics.token" | sha256sum | cut -d' ' -f1)"

kubectl create secret generic fleetset-aggregator-pki --namespace "$ns" --dry-run=client -o yaml \
  --from-file=server.pem="$pki/server.pem" --from-file=server.key="$pki/server.key" \
  --from-file=ca.pem="$pki/ca.pem" --from-file=curve_server.secret="$pki/curve_server.secret" \
  --from-file=curve_allow.txt="$pki/curve_allow.txt" --from-file=tokens.toml="$pki/tokens.toml"
echo ---
kubectl create secret generic fleetset-agent --namespace "$ns" --dry-run=client -o yaml \
  --from-file=ca.pem="$pki/ca.pem" --from-file=agent.pem="$k/agent.pem" \
  --from-file=agent.key="$k/agent.key" --from-file=metrics.pem="$pki/agent-metrics/server.pem" \
  --from-file=metrics.key="$pki/agent-metrics/server.key" \
  --from-literal=metrics_token_sha256="$token_sha256"
