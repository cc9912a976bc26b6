#!/usr/bin/env bash
# Runs every fleetset test: Rust unit tests, integration/interop tests that start the real
# binaries on loopback and read their Parquet with pyarrow, DuckDB and pandas, and (when run
# without arguments, i.e. not filtered to some tests) the fuzz smoke, scripts/fuzz-smoke.sh.
# Creates (once) a virtualenv with the Python peers from tests/requirements.txt.
#   FLEETSET_VENV   virtualenv location (default: .venv in the repository)
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/venv.sh
FLEETSET_PYTHON="$(fleetset_venv_python)"
export FLEETSET_PYTHON

# The TLS tests (tests/tests/tls.rs) probe the listeners with `openssl s_client`.
if ! command -v openssl >/dev/null; then
  if command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq openssl >/dev/null
  else
    echo "FAIL: openssl not found (the TLS tests need it)" >&2
    exit 1
  fi
fi

# tests/tests/deploy.rs checks deploy/ with the tools that consume it: systemd-analyze (the
# units) and kubectl's kustomize (the manifests; kubernetes-validate and hadolint come from
# tests/requirements.txt). Its image test needs buildah and file; it is skipped when CI=true
# unless FLEETSET_IMAGE_TEST=1 (static release builds of both binaries).
if ! command -v systemd-analyze >/dev/null && command -v apt-get >/dev/null; then
  apt-get update -qq && apt-get install -y -qq systemd >/dev/null
fi
for tool in systemd-analyze kubectl; do
  if ! command -v "$tool" >/dev/null; then
    echo "FAIL: $tool not found (tests/tests/deploy.rs needs it; kubectl: client 1.32 with kustomize)" >&2
    exit 1
  fi
done
if [[ "${CI:-}" != true || "${FLEETSET_IMAGE_TEST:-}" == 1 ]]; then
  if ! command -v buildah >/dev/null || ! command -v file >/dev/null; then
    apt-get update -qq && apt-get install -y -qq buildah file >/dev/null
  fi
else
  echo "NOTE: the container image test (tests/tests/deploy.rs) is SKIPPED in CI: the static release" \
    "builds of both binaries do not fit CI's budget; FLEETSET_IMAGE_TEST=1 runs it (deploy/README.md" \
    "records a passing run)."
fi

# tests/tests/console.rs drives the web console in headless Chromium: Debian's chromium, and
# playwright-core from tests/browser/package-lock.json (npm ci; node ships with the machine, else
# Debian's nodejs and npm).
if [[ ! -x /usr/bin/chromium ]] || ! command -v npm >/dev/null; then
  if command -v apt-get >/dev/null; then
    apt-get update -qq
    [[ -x /usr/bin/chromium ]] || apt-get install -y -qq chromium >/dev/null
    command -v npm >/dev/null || apt-get install -y -qq nodejs npm >/dev/null
  else
    echo "FAIL: /usr/bin/chromium or npm not found (tests/tests/console.rs needs them)" >&2
    exit 1
  fi
fi
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

# The agent must stay small: no Arrow or Parquet anywhere in its dependency tree.
if cargo tree -p fleetset-agent -e normal,build --prefix none | grep -qE '^(arrow|parquet)'; then
  echo "FAIL: fleetset-agent depends on arrow or parquet:" >&2
  cargo tree -p fleetset-agent -i arrow -e normal,build >&2 || true
  exit 1
fi

# The aggregator links the agent only for `demo` (a default-on feature).
if cargo tree -p fleetset-aggregator --no-default-features -e normal --prefix none | grep -q '^fleetset-agent '; then
  echo "FAIL: fleetset-aggregator without the demo feature depends on fleetset-agent" >&2
  exit 1
fi

# The integration tests run the binaries, so build them first.
cargo build --workspace --bins
cargo test --workspace "$@"

# Every fuzz target for a short run from its seeds (docs/fuzzing.md); a filtered run skips it.
if [[ $# -eq 0 ]]; then
  scripts/fuzz-smoke.sh
fi
