#!/usr/bin/env bash
# Build the CPU runtime image (runtime/Dockerfile) on a machine with no Docker engine and no
# container registry: podman + runc as root, a Debian bookworm base made with debootstrap
# (cached under build/image/), torch from the local wheel directory pip's find-links name.
#
#   runtime/image/build.sh [IMAGE]          # default mlfleet/runtime:test
#
# Environment: MLFLEET_TORCH_WHEELS (a folder holding the torch wheel; default pip's
# find-links, else torch comes from the PyTorch CPU index), MLFLEET_PIP_CERT (a CA bundle for
# pip; default $PIP_CERT, else the system's bundle), DEBIAN_MIRROR.
set -euo pipefail
cd "$(dirname "$0")/../.."

IMAGE=${1:-mlfleet/runtime:test}
BASE=localhost/mlfleet/bookworm-base:latest
CACHE=build/image
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# crun fails on this machine's hybrid cgroups; runc with cgroupfs works as root.
PODMAN=(podman --runtime runc --cgroup-manager=cgroupfs)

missing=()
for tool in podman runc debootstrap; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

mkdir -p "$CACHE"
started=$SECONDS

# The base: Debian's own python3 (3.11 on bookworm, the torch wheel's ABI) and venv, nothing else.
if ! "${PODMAN[@]}" image exists "$BASE"; then
  if [[ ! -s $CACHE/bookworm-base.tar ]]; then
    rm -rf "$CACHE/rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      bookworm "$CACHE/rootfs" "$MIRROR" >"$CACHE/debootstrap.log" \
      || { tail -20 "$CACHE/debootstrap.log"; exit 1; }
    rm -rf "$CACHE"/rootfs/var/lib/apt/lists/* "$CACHE"/rootfs/var/cache/apt/*
    tar -C "$CACHE/rootfs" -cf "$CACHE/bookworm-base.tar.part" .
    mv "$CACHE/bookworm-base.tar.part" "$CACHE/bookworm-base.tar"
    rm -rf "$CACHE/rootfs"
  fi
  "${PODMAN[@]}" import "$CACHE/bookworm-base.tar" "$BASE" >/dev/null
  echo "base image $BASE made in $((SECONDS - started)) s"
fi

# Hand the local torch wheel to the build as a read-only volume rather than downloading one.
wheels=${MLFLEET_TORCH_WHEELS:-$(python3 -m pip config get global.find-links 2>/dev/null || true)}
wheel_args=()
if [[ -n $wheels ]] && compgen -G "$wheels/torch-2.13.0*.whl" >/dev/null; then
  wheel_args=(-v "$(realpath "$wheels"):/wheels:ro" --build-arg TORCH_WHEELS=/wheels)
  echo "torch from $wheels"
fi

# The CAs this machine trusts (a TLS-intercepting proxy's among them) are handed to the build's
# pip, never kept in the image.
cert=${MLFLEET_PIP_CERT:-${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}}
cert_args=()
if [[ -n $cert && -f $cert ]]; then
  cert_args=(-v "$(realpath "$cert"):/build-ca.crt:ro" --build-arg PIP_CERT=/build-ca.crt)
fi

build_started=$SECONDS
# --format docker: the OCI format drops HEALTHCHECK.
"${PODMAN[@]}" build --network=host --pull=never --format docker -f runtime/Dockerfile \
  --ignorefile runtime/image/containerignore \
  --build-arg BASE="$BASE" "${wheel_args[@]}" "${cert_args[@]}" -t "$IMAGE" .
size=$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE")
echo "built $IMAGE in $((SECONDS - build_started)) s (base included: $((SECONDS - started)) s), size $((size / 1000000)) MB"
