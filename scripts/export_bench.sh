#!/usr/bin/env bash
# Export throughput, side by side with DuckDB on the same store files in the same run
# (SPEC target: "millions of records/s, measured beside DuckDB on the same files"; seed 000:
# > 100k records/s).
#
# 1. Builds the release `fleetset-aggregator` and copies it into the work directory (so a
#    concurrent rebuild cannot swap the binary mid-run).
# 2. Generates a store through the real agent window path and the real Parquet writer:
#    `FLEETSET_BENCH_KEEP_DIR=… cargo bench -p fleetset-aggregator --bench store_size`
#    (HOSTS hosts x HOURS h of 5-minute windows). Reused on later runs with the same HOSTS/HOURS.
# 3. Exports the `series` table RUNS times per case, cases interleaved:
#      fleetset  `export --format csv|parquet`, anonymized (default) and `--no-anonymize`;
#      DuckDB    `COPY (SELECT * FROM read_parquet('DIR/series/*/*.parquet',
#                hive_partitioning=false)) TO …` as CSV (timestamps rendered as fleetset renders
#                them, and DuckDB's default rendering) and as zstd Parquet.
#    fleetset is timed as the wall time of the whole process (start to exit); DuckDB as the
#    wall time of the COPY plus an fsync of its output (fleetset fsyncs its output before
#    renaming it into place). Both read the same files from the page cache; outputs are
#    deleted before each run, outside the timing.
# 4. Checks (untimed) that every output holds the same rows and columns: row counts and column
#    names for all; for the non-anonymized outputs, an EXCEPT ALL both ways against DuckDB's.
# 5. Prints medians, records/s and ratios as a Markdown table; writes WORK/results.json.
#
# Environment:
#   HOSTS (200), HOURS (2)     store size: HOSTS x HOURS x 12 windows x 18 metrics x 60 points
#   RUNS (3)                   timed runs per case (the median is reported)
#   FLEETSET_BENCH_DIR         work directory (default: /tmp/fleetset-export-bench)
#   FLEETSET_BIN               use this fleetset-aggregator binary instead of building one
#   FLEETSET_PYTHON            Python with duckdb and pyarrow; else a virtualenv from
#                              tests/requirements.txt (FLEETSET_VENV, default .venv) as
#                              scripts/test.sh makes it
#   KEEP_OUTPUTS=1             keep the exported files (default: removed at the end)
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

hosts="${HOSTS:-200}"
hours="${HOURS:-2}"
runs="${RUNS:-3}"
work="${FLEETSET_BENCH_DIR:-/tmp/fleetset-export-bench}"
mkdir -p "$work/bin" "$work/out"

# Python with duckdb + pyarrow.
if [ -n "${FLEETSET_PYTHON:-}" ]; then
  python="$FLEETSET_PYTHON"
else
  source scripts/venv.sh
  python="$(fleetset_venv_python)"
fi

# The binary under test.
bin="$work/bin/fleetset-aggregator"
if [ -n "${FLEETSET_BIN:-}" ]; then
  cp "$FLEETSET_BIN" "$bin"
else
  cargo build --release --bin fleetset-aggregator
  cp target/release/fleetset-aggregator "$bin"
fi

# The store: the real window path and Parquet writer, kept for reuse.
store="$work/store-${hosts}hosts-${hours}h"
if [ ! -f "$store/.complete" ]; then
  rm -rf "$store"
  echo "generating the store in $store (HOSTS=$hosts HOURS=$hours) ..." >&2
  HOSTS="$hosts" HOURS="$hours" FLEETSET_BENCH_KEEP_DIR="$store" \
    cargo bench -p fleetset-aggregator --bench store_size >&2
  touch "$store/.complete"
fi

export BENCH_BIN="$bin" BENCH_STORE="$store" BENCH_OUT="$work/out" BENCH_RUNS="$runs" \
  BENCH_WORK="$work" BENCH_REPO="$repo" KEEP_OUTPUTS="${KEEP_OUTPUTS:-0}"
exec "$python" - <<'PY'
import json, os, platform, statistics, subprocess, sys, time

import duckdb
import pyarrow

BIN, STORE, OUT = os.environ["BENCH_BIN"], os.environ["BENCH_STORE"], os.environ["BENCH_OUT"]
RUNS, WORK, REPO = int(os.environ["BENCH_RUNS"]), os.environ["BENCH_WORK"], os.environ["BENCH_REPO"]
# A fixed salt (not a secret: synthetic data) so the store directory is not written to.
ENV = dict(os.environ, FLEETSET_EXPORT_SALT="00112233445566778899aabbccddeeff")
SRC = f"read_parquet('{STORE}/series/*/*.parquet', hive_partitioning=false)"
# Close to fleetset's CSV timestamp rendering (arrow's RFC 3339 in UTC, `…T02:10:03.500Z`;
# arrow leaves out a zero fraction, DuckDB always writes ms).
TS_LIKE_FLEETSET = "%Y-%m-%dT%H:%M:%S.%gZ"

con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
rows = con.execute(f"SELECT count(*) FROM {SRC}").fetchone()[0]
columns = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {SRC}").fetchall()]


def path(case):
    return os.path.join(OUT, case["name"] + "." + case["ext"])


def fleetset(case):
    args = [BIN, "export", "--data-dir", STORE, "--table", "series", "--format", case["ext"],
            "--output", path(case)] + (["--no-anonymize"] if not case["anon"] else [])
    t = time.perf_counter()
    done = subprocess.run(args, env=ENV, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{done.stderr}")
    last = done.stdout.strip().splitlines()[-1]
    if not last.startswith(f"exported {rows} records"):
        sys.exit(f"fleetset exported an unexpected row count: {last}")
    return dt


def duck(case):
    t = time.perf_counter()
    con.execute(f"COPY (SELECT * FROM {SRC}) TO '{path(case)}' {case['copy']}")
    fd = os.open(path(case), os.O_RDONLY)
    t_copy = time.perf_counter() - t
    os.fsync(fd)
    os.close(fd)
    dt = time.perf_counter() - t
    case.setdefault("copy_only", []).append(t_copy)
    return dt


cases = [
    dict(name="fleetset-csv-anonymized", tool="fleetset", fmt="CSV", ext="csv", anon=True, run=fleetset),
    dict(name="fleetset-csv", tool="fleetset", fmt="CSV", ext="csv", anon=False, run=fleetset),
    dict(name="duckdb-csv", tool="duckdb", fmt="CSV", ext="csv", anon=False, run=duck,
         copy=f"(HEADER, TIMESTAMPFORMAT '{TS_LIKE_FLEETSET}')",
         note="timestamps rendered as fleetset does"),
    dict(name="duckdb-csv-default-ts", tool="duckdb", fmt="CSV", ext="csv", anon=False, run=duck,
         copy="(HEADER)", note="DuckDB's own timestamp rendering"),
    dict(name="fleetset-parquet-anonymized", tool="fleetset", fmt="Parquet", ext="parquet", anon=True,
         run=fleetset),
    dict(name="fleetset-parquet", tool="fleetset", fmt="Parquet", ext="parquet", anon=False, run=fleetset),
    dict(name="duckdb-parquet", tool="duckdb", fmt="Parquet", ext="parquet", anon=False, run=duck,
         copy="(FORMAT parquet, COMPRESSION zstd)"),
]

load_before = os.getloadavg()
for rep in range(RUNS):
    for case in cases:
        if os.path.exists(path(case)):
            os.remove(path(case))
        case.setdefault("times", []).append(case["run"](case))
        print(f"run {rep + 1}/{RUNS} {case['name']:<28} {case['times'][-1]:7.3f} s", file=sys.stderr)
load_after = os.getloadavg()


def read(case):
    if case["ext"] == "csv":
        return f"read_csv('{path(case)}', header=true)"
    return f"read_parquet('{path(case)}')"


# Same rows and columns (untimed).
for case in cases:
    src = read(case)
    n = con.execute(f"SELECT count(*) FROM {src}").fetchone()[0]
    cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()]
    if n != rows or cols != columns:
        sys.exit(f"{case['name']}: {n} rows, columns {cols}; expected {rows} rows, {columns}")
    case["bytes"] = os.path.getsize(path(case))
for a, b in [("fleetset-csv", "duckdb-csv"), ("fleetset-parquet", "duckdb-parquet")]:
    ca, cb = (next(c for c in cases if c["name"] == n) for n in (a, b))
    for x, y in [(ca, cb), (cb, ca)]:
        extra = con.execute(
            f"SELECT count(*) FROM (SELECT * FROM {read(x)} EXCEPT ALL SELECT * FROM {read(y)})"
        ).fetchone()[0]
        if extra:
            sys.exit(f"{x['name']} holds {extra} rows that {y['name']} lacks")
for case in cases:
    if case["anon"]:
        leaked = con.execute(
            f"SELECT count(*) FROM {read(case)} WHERE agent_id LIKE 'host-%'").fetchone()[0]
        if leaked:
            sys.exit(f"{case['name']}: {leaked} rows with a clear agent_id")

for case in cases:
    case["median_s"] = statistics.median(case["times"])
    case["records_per_s"] = rows / case["median_s"]
    if "copy_only" in case:
        case["copy_only_median_s"] = statistics.median(case["copy_only"])


def by(name):
    return next(c for c in cases if c["name"] == name)


def rev():
    try:
        r = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                           text=True).stdout.strip()
        dirty = subprocess.run(["git", "--no-optional-locks", "-C", REPO, "status", "--porcelain", "--", "aggregator/src"],
                               capture_output=True, text=True).stdout.strip()
        return r + ("+uncommitted aggregator/src" if dirty else "")
    except OSError:
        return "?"


cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"\nstore: {STORE}: series {rows:,} rows, columns {', '.join(columns)}")
print(f"machine: {os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}; "
      f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
print(f"fleetset {rev()}; DuckDB {duckdb.__version__} (threads={threads}); pyarrow {pyarrow.__version__}")
print(f"{RUNS} runs per case, median; fleetset = whole process wall time, DuckDB = COPY + fsync\n")
print("| format | tool | median s | records/s | output bytes |")
print("|---|---|---|---|---|")
label = {
    "fleetset-csv-anonymized": "fleetset, anonymized (default)",
    "fleetset-csv": "fleetset, `--no-anonymize`",
    "duckdb-csv": "DuckDB `COPY`, fleetset's timestamp format",
    "duckdb-csv-default-ts": "DuckDB `COPY`, default timestamp format",
    "fleetset-parquet-anonymized": "fleetset, anonymized (default)",
    "fleetset-parquet": "fleetset, `--no-anonymize`",
    "duckdb-parquet": "DuckDB `COPY`, zstd",
}
for c in cases:
    print(f"| {c['fmt']} | {label[c['name']]} | {c['median_s']:.2f} | {c['records_per_s']:,.0f} | {c['bytes']:,} |")
ratios = {
    "csv anonymized / duckdb": by("duckdb-csv")["median_s"] / by("fleetset-csv-anonymized")["median_s"],
    "csv no-anonymize / duckdb": by("duckdb-csv")["median_s"] / by("fleetset-csv")["median_s"],
    "parquet anonymized / duckdb": by("duckdb-parquet")["median_s"] / by("fleetset-parquet-anonymized")["median_s"],
    "parquet no-anonymize / duckdb": by("duckdb-parquet")["median_s"] / by("fleetset-parquet")["median_s"],
}
print("\nratio fleetset / DuckDB records/s (> 1: fleetset faster):")
for k, v in ratios.items():
    print(f"  {k:<32} {v:.2f}x")
for n in ("duckdb-csv", "duckdb-csv-default-ts", "duckdb-parquet"):
    c = by(n)
    print(f"  ({n}: COPY alone {c['copy_only_median_s']:.2f} s, with fsync {c['median_s']:.2f} s)")

json.dump(dict(
    rows=rows, columns=columns, store=STORE, runs=RUNS, duckdb=duckdb.__version__, threads=threads,
    fleetset=rev(), cpus=os.cpu_count(), cpu=cpu, load_before=load_before, load_after=load_after,
    cases=[{k: v for k, v in c.items() if k != "run"} for c in cases], ratios=ratios,
), open(os.path.join(WORK, "results.json"), "w"), indent=1)
if os.environ.get("KEEP_OUTPUTS") != "1":
    for c in cases:
        os.remove(path(c))
PY
