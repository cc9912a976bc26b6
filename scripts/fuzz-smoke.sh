#!/usr/bin/env bash
# Fuzz smoke (docs/fuzzing.md): builds every target in fuzz/ once (cargo-fuzz, nightly, ASan,
# debug assertions and overflow checks) and runs each for FUZZ_SECONDS from its checked-in seeds
# (fuzz/seeds/<target>); fails on any crash, panic, leak, timeout or out-of-memory. A failing
# input is kept in fuzz/artifacts/<target>/ (reproduce: cargo +nightly fuzz run <target> <file>).
# Installs cargo-fuzz (crates.io, --locked) when it is missing; needs a nightly toolchain.
#   FUZZ_SECONDS      seconds per target (default 20)
#   FUZZ_TARGET_DIR   fuzz build directory (default: $CARGO_TARGET_DIR-fuzz, else fuzz/target)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-20}"
target_dir="${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:+$CARGO_TARGET_DIR-fuzz}}"
target_dir="${target_dir:-$PWD/fuzz/target}"

if ! rustup run nightly rustc --version > /dev/null 2>&1; then
  echo "FAIL: the fuzz smoke needs a nightly toolchain (rustup toolchain install nightly)" >&2
  exit 1
fi
if ! cargo +nightly fuzz --version > /dev/null 2>&1; then
  cargo +nightly install cargo-fuzz --locked
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cd fuzz
started=$SECONDS
cargo +nightly fuzz build --target-dir "$target_dir"
echo "fuzz smoke: targets built in $((SECONDS - started)) s"

failed=()
for target in $(cargo +nightly fuzz list); do
  mkdir -p "$scratch/corpus/$target" "$scratch/tmp" "artifacts/$target"
  # The first corpus directory takes new inputs: the checked-in seeds stay as they are.
  if ! TMPDIR="$scratch/tmp" cargo +nightly fuzz run --target-dir "$target_dir" "$target" \
      "$scratch/corpus/$target" "seeds/$target" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=16384 -timeout=10 \
      -artifact_prefix="artifacts/$target/" -print_final_stats=1 > "$scratch/$target.log" 2>&1; then
    tail -40 "$scratch/$target.log" >&2
    failed+=("$target")
  fi
  echo "fuzz smoke: $target: $(grep -E '^stat::number_of_executed_units' "$scratch/$target.log" | awk '{print $2}') runs, peak RSS $(grep -E '^stat::peak_rss_mb' "$scratch/$target.log" | awk '{print $2}') MB"
done
echo "fuzz smoke: $((SECONDS - started)) s in all"
if ((${#failed[@]})); then
  echo "FAIL: fuzz targets crashed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
