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
