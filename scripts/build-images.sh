#!/usr/bin/env bash
# Builds the fleetset container images from this repository alone, daemonless and offline:
#   1. static release binaries of the agent and the aggregator (glibc +crt-static; libzmq and
#      its C++ runtime are linked statically by third_party/zmq-sys), checked to be static;
#   2. a build context with the binaries, the CA bundle and a minimal /etc;
#   3. `buildah bud` of deploy/container/Containerfile's two targets (`FROM scratch`: nothing
#      is pulled), tagged fleetset-agent:VERSION and fleetset-aggregator:VERSION.
# Prints one line per image: `<name>:<version> <image id> <size>`.
#
#   VERSION                       image tag (default: the workspace version in Cargo.toml)
#   FLEETSET_STATIC_TARGET_DIR    cargo target dir of the static build
#                                 (default: $HOME/.cache/fleetset-target-static)
#   FLEETSET_BUILDAH_STORAGE      extra global buildah options (default: --storage-driver vfs)
# Needs: cargo, buildah (`apt-get install -y buildah`), file.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in cargo buildah file; do
  if ! command -v "$tool" >/dev/null; then
    echo "build-images: $tool not found (buildah: apt-get install -y buildah)" >&2
    exit 1
  fi
done

VERSION="${VERSION:-$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)}"
TARGET=x86_64-unknown-linux-gnu
export CARGO_TARGET_DIR="${FLEETSET_STATIC_TARGET_DIR:-$HOME/.cache/fleetset-target-static}"
read -r -a STORAGE <<<"${FLEETSET_BUILDAH_STORAGE:---storage-driver vfs}"

# Run from `cargo test` (tests/tests/deploy.rs), the environment holds that cargo's CARGO_*,
# LD_LIBRARY_PATH and the like; build scripts that watch them would make every run a rebuild.
while IFS= read -r var; do
  case "$var" in
    CARGO_HOME | CARGO_TARGET_DIR) ;;
    CARGO | CARGO_* | LD_LIBRARY_PATH | RUSTC | RUSTC_* | RUSTDOC | RUSTFLAGS | OUT_DIR) unset "$var" ;;
  esac
done < <(compgen -e)
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release --locked --target "$TARGET" -p fleetset-agent -p fleetset-aggregator >&2
BIN="$CARGO_TARGET_DIR/$TARGET/release"

ctx="$(mktemp -d "${TMPDIR:-/tmp}/fleetset-image-context.XXXXXX")"
trap 'rm -rf "$ctx"' EXIT
for b in fleetset-agent fleetset-aggregator; do
  # `file` says "statically linked" or "static-pie linked"; a dynamic one says "dynamically".
  if ! file -L "$BIN/$b" | grep -qE 'static(-pie)? linked|statically linked'; then
    echo "build-images: $BIN/$b is not statically linked:" >&2
    file -L "$BIN/$b" >&2
    exit 1
  fi
  install -m 0755 "$BIN/$b" "$ctx/$b"
done
mkdir -p "$ctx/etc/ssl/certs" "$ctx/skel/var/lib" "$ctx/var/lib/fleetset-agent" "$ctx/var/lib/fleetset"
install -m 0644 /etc/ssl/certs/ca-certificates.crt "$ctx/etc/ssl/certs/ca-certificates.crt"
printf 'hosts: files dns\n' >"$ctx/etc/nsswitch.conf"
printf 'root:x:0:0:root:/:/sbin/nologin\nfleetset:x:65532:65532:fleetset:/var/lib/fleetset:/sbin/nologin\n' >"$ctx/etc/passwd"
printf 'root:x:0:\nfleetset:x:65532:\n' >"$ctx/etc/group"
chmod 0644 "$ctx/etc/nsswitch.conf" "$ctx/etc/passwd" "$ctx/etc/group"

revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
# The commit's time, not the build's: the same commit and binaries give the same image.
created="$(git log -1 --format=%cI 2>/dev/null || date -u +%Y-%m-%dT%H:%M:%SZ)"
epoch="$(git log -1 --format=%ct 2>/dev/null || date +%s)"
for target in agent aggregator; do
  name="fleetset-$target:$VERSION"
  old="$(buildah "${STORAGE[@]}" images --noheading --no-trunc --format '{{.ID}}' "$name" 2>/dev/null || true)"
  buildah "${STORAGE[@]}" bud --isolation chroot --pull=never --quiet \
    --file deploy/container/Containerfile --target "$target" \
    --build-arg VERSION="$VERSION" --timestamp "$epoch" \
    --label org.opencontainers.image.revision="$revision" \
    --label org.opencontainers.image.created="$created" \
    --tag "$name" "$ctx" >/dev/null
  id="$(buildah "${STORAGE[@]}" images --noheading --no-trunc --format '{{.ID}}' "$name")"
  # The image this tag named before, now untagged: removed (kept if a container uses it).
  if [[ -n "$old" && "$old" != "$id" ]]; then
    buildah "${STORAGE[@]}" rmi "$old" >/dev/null 2>&1 || true
  fi
  size="$(buildah "${STORAGE[@]}" images --noheading --format '{{.Size}}' "$name" | tr -d ' ')"
  echo "$name $id $size"
done
