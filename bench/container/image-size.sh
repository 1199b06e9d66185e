#!/usr/bin/env bash
# The image's size against a named alternative that can be measured here (no
# registry is reachable, so no published image can be pulled): the seeds'
# kind of image, a shell entrypoint around qemu (kvm-manager, Berth and
# BBVA's docker-kvm all run qemu from a shell script), built on the same
# Debian 13 base with the Debian packages such an image needs: qemu and
# qemu-img, dnsmasq, iproute2, genisoimage (Berth's config drive), curl (the
# image fetch), procps. Then where podvisor's image spends its bytes.
#   usage: bench/container/image-size.sh [IMAGE] [BASE]   (as root, after make image)
set -euo pipefail
cd "$(dirname "$0")/../.."
export CONTAINERS_CONF=$PWD/deploy/podman/containers.conf
image=${1:-localhost/podvisor:latest}
base=${2:-localhost/podvisor-base:trixie}
seedlike=localhost/podvisor-bench-seedlike:$$
trap 'podman rmi -f "$seedlike" >/dev/null 2>&1 || true' EXIT
podman build -q --network host -t "$seedlike" -f - . >/dev/null <<EOF2
FROM $base
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      qemu-system-x86 qemu-utils dnsmasq-base iproute2 genisoimage curl procps ca-certificates >/dev/null \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/doc/* /usr/share/man/*
EOF2
size() { podman image inspect "$1" --format '{{.Size}}'; }
mib() { awk -v b="$1" 'BEGIN { printf "%.0f", b / 1048576 }'; }
echo "| image | size MiB (uncompressed) |"
echo "|---|---|"
echo "| Debian 13 minbase (\`$base\`) | $(mib "$(size "$base")") |"
echo "| a seed-style image: the base + qemu, qemu-img, dnsmasq, iproute2, genisoimage, curl | $(mib "$(size "$seedlike")") |"
echo "| podvisor (\`$image\`) | $(mib "$(size "$image")") |"
echo
echo "Inside podvisor's image (du, MiB):"
podman run --rm --network none --entrypoint sh "$image" -c \
  'du -sm /opt/podvisor /usr/lib/x86_64-linux-gnu/libnode.so.* /usr/share/nodejs /usr/bin/passt /usr/sbin/nft /usr/lib/x86_64-linux-gnu/libnftables.so.* 2>/dev/null; du -sm /usr/share/qemu /usr/bin/qemu-system-x86_64 2>/dev/null' | awk '{ printf "- %s: %s\n", $2, $1 }'
