#!/usr/bin/env bash
# Self-check of the test guest: builds it (cached) with build.sh, then boots it
# under qemu TCG through throwaway qcow2 overlays and checks the contract in
# README.md: the markers, the page on port 80, the boot counter surviving a
# restart, both config drive formats, user-data, DHCP options 15 and 119, the
# fallback without a DHCP server, and the ACPI power button. Every wait reads
# the serial log under a deadline; nothing sleeps a fixed time.
# Needs, besides build.sh's packages: qemu-system-x86 genisoimage curl socat.
# On failure the temp dir with every serial log is kept and its path printed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$here/build.sh"
image=${PODVISOR_GUEST_CACHE:-$here/.cache}/guest.qcow2

for c in qemu-system-x86_64 qemu-img genisoimage curl socat; do
  command -v "$c" > /dev/null || { echo "check: missing $c" >&2; exit 1; }
done

tmp=$(mktemp -d /tmp/podvisor-guest-check.XXXXXX)
netns=pvgchk-${tmp##*.}
qpid=
dnsmasq_pid=
in_ns=() # command prefix that runs curl and qemu inside the namespace, if any
ok=
stop_pid() {
  if [ -n "$1" ] && kill -0 "$1" 2> /dev/null; then
    kill "$1" 2> /dev/null || true
    wait "$1" 2> /dev/null || true
  fi
}
cleanup() {
  stop_pid "$qpid"
  stop_pid "$dnsmasq_pid"
  ip netns del "$netns" 2> /dev/null || true
  if [ -n "$ok" ]; then
    rm -rf "$tmp"
  else
    echo "check: FAILED, serial logs kept in $tmp" >&2
  fi
}
trap cleanup EXIT

fail() {
  echo "check: FAIL: $*" >&2
  [ -n "${log:-}" ] && [ -f "$log" ] && { echo "--- serial log $log (tail)" >&2; tail -n 30 "$log" >&2; }
  exit 1
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }
secs() { printf '%d.%02d s' $(($1 / 1000)) $(($1 % 1000 / 10)); }

# Prints a TCP port on 127.0.0.1 that nothing listens on.
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    (exec 3<> "/dev/tcp/127.0.0.1/$p") 2> /dev/null || { echo "$p"; return; }
  done
}

# The serial log without the carriage returns of the guest tty's CRLF.
serial() { tr -d '\r' < "$log"; }

# wait_log PATTERN TIMEOUT_S: waits until the serial log has a line matching
# the extended regex, failing early if qemu exits.
wait_log() {
  local deadline=$(($(now_ms) + $2 * 1000))
  until serial | grep -Eq "$1"; do
    kill -0 "$qpid" 2> /dev/null || fail "qemu exited before /$1/ appeared"
    [ "$(now_ms)" -lt "$deadline" ] || fail "no /$1/ on the serial console within $2 s"
    sleep 0.05
  done
}

# make_iso NAME LABEL DIR: a config drive the way packages/configdrive makes one.
make_iso() {
  genisoimage -quiet -o "$tmp/$1.iso" -V "$2" -J -R "$3"
}

# boot NAME OVERLAY NETDEV [ISO]: starts qemu, waits for READY; sets log, port,
# qpid, ready_ms.
boot() {
  local name=$1 overlay=$2 netdev=$3 iso=${4:-}
  log=$tmp/$name.serial.log
  qmp=$tmp/$name.qmp
  port=$(free_port)
  local args=(
    -accel tcg -machine q35 -m 256 -nodefaults -display none -serial stdio
    -drive "if=none,id=d0,file=$overlay,format=qcow2" -device virtio-blk-pci,drive=d0
    -netdev "${netdev//PORT/$port}" -device virtio-net-pci,netdev=n0
    -qmp "unix:$qmp,server=on,wait=off"
  )
  [ -n "$iso" ] && args+=(-drive "if=none,id=cd0,media=cdrom,readonly=on,file=$iso" -device ide-cd,drive=cd0)
  local t0
  t0=$(now_ms)
  "${in_ns[@]}" qemu-system-x86_64 "${args[@]}" < /dev/null > "$log" 2>&1 &
  qpid=$!
  wait_log '^PODVISOR-GUEST-READY ' 60
  ready_ms=$(($(now_ms) - t0))
}

# powerdown: presses the ACPI power button over QMP and waits for qemu to exit
# by itself; sets down_ms.
powerdown() {
  local t0 deadline rc=0
  t0=$(now_ms)
  printf '{"execute":"qmp_capabilities"}\n{"execute":"system_powerdown"}\n' |
    socat - "UNIX-CONNECT:$qmp" > "$qmp.log"
  deadline=$((t0 + 20000))
  while kill -0 "$qpid" 2> /dev/null; do
    [ "$(now_ms)" -lt "$deadline" ] || fail "qemu still running 20 s after system_powerdown"
    sleep 0.05
  done
  wait "$qpid" || rc=$?
  qpid=
  down_ms=$(($(now_ms) - t0))
  [ "$rc" = 0 ] || fail "qemu exited with status $rc after system_powerdown"
  serial | grep -qx 'PODVISOR-GUEST-POWEROFF' || fail "no PODVISOR-GUEST-POWEROFF marker"
}

# expect_page EXPECTED [URL]: GET / must return exactly EXPECTED as text/plain.
expect_page() {
  local headers=$tmp/headers body url=${2:-http://127.0.0.1:$port/}
  body=$("${in_ns[@]}" curl -sS --max-time 10 -D "$headers" "$url") || fail "curl $url failed"
  grep -qi '^content-type: text/plain' "$headers" || fail "GET / is not text/plain: $(cat "$headers")"
  [ "$body" = "$1" ] || fail "GET / returned:
$body
expected:
$1"
}

expect_line() { # EXACT_LINE
  serial | grep -qxF "$1" || fail "no serial line '$1'"
}

report() {
  printf 'check: %-34s qemu start -> READY %s, powerdown -> exit %s\n' "$1" "$(secs "$ready_ms")" "$(secs "$down_ms")"
}

mac=52:54:00:12:34:56

# --- config-2, boots 1 and 2 on one overlay ------------------------------------
mkdir -p "$tmp/c2/openstack/latest"
cat > "$tmp/c2/openstack/latest/meta_data.json" << 'EOF'
{
  "uuid"    :   "0b5a3c1e-3f0e-4b8e-9d7c-1a2b3c4d5e6f",
  "name": "ignored-name",
  "hostname":"web-1",
  "launch_index": 0
}
EOF
printf '#!/bin/sh\necho "hello from config-2 $(hostname)"\nexit 3\n' > "$tmp/c2/openstack/latest/user_data"
make_iso c2 config-2 "$tmp/c2"
qemu-img create -q -f qcow2 -b "$image" -F qcow2 "$tmp/pet.qcow2"

for n in 1 2; do
  boot "config-2-boot-$n" "$tmp/pet.qcow2" "user,id=n0,dnssearch=a.example,dnssearch=b.example,hostfwd=tcp:127.0.0.1:PORT-:80" "$tmp/c2.iso"
  expect_line "PODVISOR-GUEST-NIC eth0 $mac 10.0.2.15/24"
  expect_line "PODVISOR-GUEST-READY boot-count=$n instance-id=0b5a3c1e-3f0e-4b8e-9d7c-1a2b3c4d5e6f hostname=web-1"
  expect_page "podvisor-test-guest
instance-id: 0b5a3c1e-3f0e-4b8e-9d7c-1a2b3c4d5e6f
hostname: web-1
boot-count: $n
nic: eth0 $mac 10.0.2.15/24
nameserver: 10.0.2.3
search: a.example b.example"
  wait_log '^PODVISOR-GUEST-USER-DATA-DONE exit=3$' 20
  serial | grep -q 'user-data: hello from config-2 web-1$' || fail "no user-data output line"
  powerdown
  report "config-2 boot $n:"
done

# --- NoCloud cidata, fresh disk ------------------------------------------------
mkdir -p "$tmp/ci"
printf 'instance-id:   "iid-nocloud-7"  \nlocal-hostname: db-2\n' > "$tmp/ci/meta-data"
printf '#cloud-config\nhostname: not-a-script\n' > "$tmp/ci/user-data"
make_iso ci cidata "$tmp/ci"
qemu-img create -q -f qcow2 -b "$image" -F qcow2 "$tmp/ci.qcow2"
boot cidata "$tmp/ci.qcow2" "user,id=n0,domainname=corp.example,hostfwd=tcp:127.0.0.1:PORT-:80" "$tmp/ci.iso"
expect_line "PODVISOR-GUEST-READY boot-count=1 instance-id=iid-nocloud-7 hostname=db-2"
expect_page "podvisor-test-guest
instance-id: iid-nocloud-7
hostname: db-2
boot-count: 1
nic: eth0 $mac 10.0.2.15/24
nameserver: 10.0.2.3
search: corp.example"
serial | grep -q 'user-data:' && fail "a #cloud-config user-data was run as a script"
powerdown
report "cidata:"

# --- no config drive, no DHCP server ---------------------------------------------
# A socket netdev whose peer never answers: DHCP gives up, READY must still come.
qemu-img create -q -f qcow2 -b "$image" -F qcow2 "$tmp/bare.qcow2"
p1=$(free_port)
p2=$(free_port)
boot no-dhcp "$tmp/bare.qcow2" "socket,id=n0,udp=127.0.0.1:$p1,localaddr=127.0.0.1:$p2"
expect_line "PODVISOR-GUEST-NIC eth0 $mac"
expect_line "PODVISOR-GUEST-READY boot-count=1 instance-id=none hostname=podvisor-guest"
powerdown
report "no config drive, no DHCP:"

# --- Calico-style lease: a /32 and option 121 routes ------------------------------
# dnsmasq on a tap in a private namespace hands out 10.244.1.5/32 with the
# classless routes "169.254.1.1/32 on-link, default via 169.254.1.1", DNS and
# option 119. The namespace answers ARP for 169.254.1.1 by owning that address.
# The router option names a host that does not exist: RFC 3442 says option 121
# wins, and the page only comes back if the guest routed by option 121.
ip netns add "$netns"
in_ns=(ip netns exec "$netns")
"${in_ns[@]}" ip link set lo up
"${in_ns[@]}" ip tuntap add dev tap0 mode tap
"${in_ns[@]}" ip addr add 10.244.1.1/24 dev tap0
"${in_ns[@]}" ip addr add 169.254.1.1/32 dev tap0
"${in_ns[@]}" ip link set tap0 up
"${in_ns[@]}" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
  --port=0 --interface=tap0 --bind-interfaces --dhcp-leasefile="$tmp/leases" \
  --dhcp-range=10.244.1.0,static,255.255.255.0 --dhcp-host="$mac,10.244.1.5" \
  --dhcp-option=option:netmask,255.255.255.255 --dhcp-option=option:router,10.244.1.254 \
  --dhcp-option=option:classless-static-route,169.254.1.1/32,0.0.0.0,0.0.0.0/0,169.254.1.1 \
  --dhcp-option=option:dns-server,10.96.0.10,10.96.0.11 \
  --dhcp-option=option:domain-search,default.svc.cluster.local,svc.cluster.local \
  > "$tmp/dnsmasq.log" 2>&1 &
dnsmasq_pid=$!
qemu-img create -q -f qcow2 -b "$image" -F qcow2 "$tmp/calico.qcow2"
boot calico "$tmp/calico.qcow2" "tap,id=n0,ifname=tap0,script=no,downscript=no"
expect_line "PODVISOR-GUEST-NIC eth0 $mac 10.244.1.5/32"
expect_page "podvisor-test-guest
instance-id: none
hostname: podvisor-guest
boot-count: 1
nic: eth0 $mac 10.244.1.5/32
nameserver: 10.96.0.10
nameserver: 10.96.0.11
search: default.svc.cluster.local svc.cluster.local" http://10.244.1.5/
powerdown
report "Calico-style /32, option 121:"

ok=1
echo "check: all passed"
