# Sourced by scripts/test.sh and scripts/export_bench.sh (from the repository root): makes, once,
# the virtualenv with the Python peers of tests/requirements.txt, reinstalling when that file
# changes, and prints its python.
#   FLEETSET_VENV   virtualenv location (default: .venv in the repository)
fleetset_venv_python() {
  local venv="${FLEETSET_VENV:-$PWD/.venv}"
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" >&2
  fi
  if ! cmp -s tests/requirements.txt "$venv/.fleetset-requirements"; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/requirements.txt >&2
    cp tests/requirements.txt "$venv/.fleetset-requirements"
  fi
  echo "$venv/bin/python"
}
