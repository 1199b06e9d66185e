#!/usr/bin/env bash
# Measures what the nat-bridge backend needs in a container: runs the image
# (make image) with --cap-drop ALL plus the overlay's privileges, then once
# more with each of them taken away, and reports how far podvisor got (the
# network attached, or the error it stopped with) and how `podman stop`
# ended (exit code; 137 means the stop timeout ran out). The stop comes right
# after the attach, while the guest still boots and cannot answer ACPI yet, so
# a running VM takes the whole ACPI slice of PODVISOR_STOP_GRACE and then QMP
# quit (exit 7: a forced shutdown). The base is a local file.
#   usage: bench/container/privileges.sh      (as root; prints a Markdown table)
set -euo pipefail
cd "$(dirname "$0")/../.."
export CONTAINERS_CONF=$PWD/deploy/podman/containers.conf
image=localhost/podvisor:latest
guest=$PWD/test/guest/.cache/guest.qcow2
id=pvpriv$$
net=$id-net
podman network create "$net" >/dev/null
bridge=$(podman network inspect "$net" --format '{{.NetworkInterface}}')
cleanup() {
  podman rm -f -t 0 $(podman ps -aq --filter "name=^$id-") >/dev/null 2>&1 || true
  podman volume rm -f $(podman volume ls -q --filter "name=^$id-") >/dev/null 2>&1 || true
  podman network rm -f "$net" >/dev/null 2>&1 || true
  ip link del "$bridge" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# name | --cap-add list | tun device? | ip_forward sysctl?
variants=(
  "the overlay's privileges|NET_ADMIN,NET_BIND_SERVICE|yes|yes"
  "without NET_ADMIN|NET_BIND_SERVICE|yes|yes"
  "without NET_BIND_SERVICE|NET_ADMIN|yes|yes"
  "without /dev/net/tun|NET_ADMIN,NET_BIND_SERVICE|no|yes"
  "without the ip_forward sysctl (the pod inherits the node's)|NET_ADMIN,NET_BIND_SERVICE|yes|no"
  "with ip_forward=0 in the pod (a node without forwarding)|NET_ADMIN,NET_BIND_SERVICE|yes|zero"
)
echo "| container | network | stop (podman stop -t 40) |"
echo "|---|---|---|"
n=0
for v in "${variants[@]}"; do
  IFS='|' read -r what add tun sysctl <<<"$v"
  n=$((n + 1))
  name=$id-$n
  args=(--name "$name" --hostname vm-0 --network "$net" --cap-drop ALL --cap-add "$add"
    -v "$id-disk-$n:/var/lib/podvisor/disk" -v "$id-images:/var/lib/podvisor/images"
    -v "$guest:/guest.qcow2:ro" -e IMG_SOURCE=/guest.qcow2 -e PODVISOR_ACCEL=tcg)
  [[ $tun == yes ]] && args+=(--device /dev/net/tun)
  [[ $sysctl == yes ]] && args+=(--sysctl net.ipv4.ip_forward=1)
  [[ $sysctl == zero ]] && args+=(--sysctl net.ipv4.ip_forward=0)
  podman run -d "${args[@]}" "$image" >/dev/null
  # Wait for the network attach (the `attached` log line) or the exit.
  result=""
  for _ in $(seq 600); do
    logs=$(podman logs "$name" 2>&1 || true)
    if grep -q '"msg":"attached"' <<<"$logs"; then result="attached"; break; fi
    if [[ $(podman inspect "$name" --format '{{.State.Running}}') != true ]]; then
      result="failed: $(grep -E '"msg":"(vm failed|startup failed)"' <<<"$logs" | grep -o '"message":"[^"]*"' | head -n 1 | cut -c12- | tr -d '"' | cut -c1-160)"
      break
    fi
    sleep 0.2
  done
  start=$(date +%s.%N)
  podman stop -t 40 "$name" >/dev/null 2>&1 || true
  took=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
  code=$(podman inspect "$name" --format '{{.State.ExitCode}}')
  echo "| $what | $result | exit $code after ${took} s |"
  podman rm -f -t 0 "$name" >/dev/null
done
