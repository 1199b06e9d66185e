#!/usr/bin/env bash
# bench/network-setup baseline: the NAT bridge's attach and detach written as
# a shell entrypoint would (ip, sysctl, nft, dnsmasq), run inside the pod's
# network namespace. The nftables script and the dnsmasq argv are the ones
# podvisor builds (run.mjs writes them with the package's own pure builders),
# so both sides do the same work. Like podvisor, attach first removes any
# leftovers, and dnsmasq counts as started once it has written its pid file
# (polled every 20 ms, as podvisor does). Prints one JSON line:
# {"attachMs": [...], "detachMs": [...]}.
# Usage: baseline.sh ITERATIONS WORK_DIR   (WORK_DIR holds ruleset.nft, teardown.nft, dnsmasq.args, env)
set -euo pipefail
iterations=$1
work=$2
# shellcheck source=/dev/null
source "$work/env" # BRIDGE TAP BRIDGE_MAC GATEWAY MTU PID_FILE
mapfile -t dnsmasq_args <"$work/dnsmasq.args"

stop_dnsmasq() {
  local pid
  [[ -f $PID_FILE ]] || return 0
  pid=$(<"$PID_FILE")
  if kill -TERM "$pid" 2>/dev/null; then
    while kill -0 "$pid" 2>/dev/null; do sleep 0.02; done
  fi
  rm -f "$PID_FILE"
}

attach() {
  # Leftovers of an earlier run first (idempotent).
  stop_dnsmasq
  nft -f "$work/teardown.nft"
  ip link del dev "$TAP" 2>/dev/null || true
  ip link del dev "$BRIDGE" 2>/dev/null || true
  # The pod interface and its address.
  local dev addr
  dev=$(ip -4 route show default | awk '{ for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); exit } }')
  addr=$(ip -4 -o addr show dev "$dev" | awk '{ print $4; exit }')
  [[ -n $addr ]] || { echo "no address on $dev" >&2; exit 1; }
  ip link add name "$BRIDGE" address "$BRIDGE_MAC" type bridge
  ip link set dev "$BRIDGE" mtu "$MTU"
  ip addr add "$GATEWAY/30" dev "$BRIDGE"
  ip link set dev "$BRIDGE" up
  ip tuntap add dev "$TAP" mode tap
  ip link set dev "$TAP" mtu "$MTU"
  ip link set dev "$TAP" master "$BRIDGE"
  ip link set dev "$TAP" up
  previous_forward=$(sysctl -n net.ipv4.ip_forward)
  sysctl -q -w net.ipv4.ip_forward=1 "net.ipv4.conf.$BRIDGE.route_localnet=1"
  nft -f "$work/ruleset.nft"
  rm -f "$PID_FILE"
  dnsmasq "${dnsmasq_args[@]}" >/dev/null 2>&1 &
  dnsmasq_pid=$!
  until [[ -s $PID_FILE ]]; do
    kill -0 "$dnsmasq_pid" 2>/dev/null || { echo "dnsmasq exited while starting" >&2; exit 1; }
    sleep 0.02
  done
}

detach() {
  kill -TERM "$dnsmasq_pid"
  wait "$dnsmasq_pid" || true
  rm -f "$PID_FILE"
  nft -f "$work/teardown.nft"
  ip link del dev "$TAP"
  ip link del dev "$BRIDGE"
  sysctl -q -w "net.ipv4.ip_forward=$previous_forward"
}

# Timestamps only inside the loop; the arithmetic (a fork of awk) comes after.
stamps=()
for ((i = 0; i < iterations; i++)); do
  t0=$EPOCHREALTIME
  attach
  t1=$EPOCHREALTIME
  detach
  t2=$EPOCHREALTIME
  stamps+=("$t0 $t1 $t2")
done
printf '%s\n' "${stamps[@]}" | awk '
  { a = a sep sprintf("%.3f", ($2 - $1) * 1000); d = d sep sprintf("%.3f", ($3 - $2) * 1000); sep = "," }
  END { printf "{\"attachMs\":[%s],\"detachMs\":[%s]}\n", a, d }'
