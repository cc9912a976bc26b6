#!/usr/bin/env bash
# Runs every fleetset test: Rust unit tests, and integration/interop tests that start the real
# binaries on loopback and read their Parquet with pyarrow, DuckDB and pandas.
# Creates (once) a virtualenv with the Python peers from tests/requirements.txt.
#   FLEETSET_VENV   virtualenv location (default: .venv in the repository)
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${FLEETSET_VENV:-$PWD/.venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! cmp -s tests/requirements.txt "$venv/.fleetset-requirements"; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/requirements.txt
  cp tests/requirements.txt "$venv/.fleetset-requirements"
fi
export FLEETSET_PYTHON="$venv/bin/python"

# The agent must stay small: no Arrow or Parquet anywhere in its dependency tree.
if cargo tree -p fleetset-agent -e normal,build --prefix none | grep -qE '^(arrow|parquet)'; then
  echo "FAIL: fleetset-agent depends on arrow or parquet:" >&2
  cargo tree -p fleetset-agent -i arrow -e normal,build >&2 || true
  exit 1
fi

# The integration tests run the binaries, so build them first.
cargo build --workspace --bins
cargo test --workspace "$@"
