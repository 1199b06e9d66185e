#!/usr/bin/env bash
# demo.sh: `make demo`. Runs the test guest with podvisor the way a user meets
# it in Kubernetes: inside a simulated Calico-style pod (network namespaces made
# by test/support/pod.sh, wired to the REAL root namespace so that you can curl
# the pod IP from your shell), with the NAT bridge giving the VM the pod's IP,
# and /metadata, /userdata and resolv.conf of its own. It prints the pod IP, the
# guest's page, the VNC address and the control endpoint, and stays in the
# foreground until Ctrl-C; then it shuts the VM down gracefully (SIGTERM to
# podvisor, which powers the guest down over ACPI) and removes everything it
# created (namespaces, veth, temp dir).
#
#   test/demo/demo.sh                 # interactive, until Ctrl-C
#   DEMO_CHECK=1 test/demo/demo.sh    # CI: boot, curl the page from the root namespace, check it, shut down, exit 0
#
# Environment: DEMO_NAME (pod name, default podvisor-demo-<pid>), DEMO_POD_IP
# (a /32 in 10.244.0.0/16, default derived from the name), DEMO_TIMEOUT
# (seconds to wait for the guest, default 180). Needs root; `make demo` builds
# podvisor and the guest first.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
POD_SH="$REPO/test/support/pod.sh"
CLI="$REPO/apps/supervisord/dist/bundle/podvisor.cjs"
GUEST="$REPO/test/guest/.cache/guest.qcow2"
NAME=${DEMO_NAME:-podvisor-demo-$$}
CHECK=${DEMO_CHECK:-}
TIMEOUT=${DEMO_TIMEOUT:-180}
INSTANCE_ID="demo-$NAME"
VM_HOSTNAME="demo-vm"

say() { echo "demo: $*" >&2; }
die() {
  say "$*"
  exit 1
}

[[ $(id -u) == 0 ]] || die "needs root (network namespaces): sudo make demo"
[[ -f $CLI ]] || die "$CLI is missing: run make build (make demo does it)"
[[ -f $GUEST ]] || die "$GUEST is missing: run make guest (make demo does it)"
[[ -z ${DEMO_POD_IP:-} || $DEMO_POD_IP == 10.244.* ]] || die "DEMO_POD_IP must be in 10.244.0.0/16, got $DEMO_POD_IP"

WORK=''
PODVISOR_PID=''
POD_CREATED=0
CLEANED=0

# Idempotent: runs on EXIT, INT and TERM, and does each step only once.
cleanup() {
  local status=$?
  ((CLEANED == 1)) && return 0
  CLEANED=1
  # A second Ctrl-C must not cut the cleanup short.
  trap '' INT TERM
  if [[ -n $PODVISOR_PID ]] && kill -0 "$PODVISOR_PID" 2>/dev/null; then
    say "shutting the VM down (SIGTERM to podvisor, pid $PODVISOR_PID)"
    kill -TERM "$PODVISOR_PID" 2>/dev/null || true
    local rc=0
    wait "$PODVISOR_PID" || rc=$?
    say "podvisor exited with status $rc"
    if ((rc != 0 && status == 0)); then status=1; fi
  fi
  if ((POD_CREATED == 1)); then
    "$POD_SH" destroy "$NAME" >/dev/null || say "pod.sh destroy $NAME failed"
  fi
  [[ -n $WORK ]] && rm -rf "$WORK"
  say "removed the pod $NAME and everything the demo created"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 0' INT
trap 'exit 0' TERM

WORK=$(mktemp -d "/tmp/$NAME.XXXXXX")
mkdir -p "$WORK/disk" "$WORK/images"
cat >"$WORK/resolv.conf" <<'EOF'
nameserver 10.96.0.10
search demo.svc.cluster.local svc.cluster.local cluster.local
options ndots:5
EOF
# The ConfigMaps a pod would mount at /metadata and /userdata.
cat >"$WORK/metadata" <<EOF
instance-id: $INSTANCE_ID
local-hostname: $VM_HOSTNAME
EOF
cat >"$WORK/userdata" <<'EOF'
#!/bin/sh
echo "hello from the demo's user-data on $(hostname)"
EOF

say "creating the Calico-style pod $NAME, wired to the root namespace"
POD_CREATED=1
pod_args=(create "$NAME" --node root --resolv "$WORK/resolv.conf")
[[ -n ${DEMO_POD_IP:-} ]] && pod_args+=(--if "eth0=$DEMO_POD_IP/32")
facts=$("$POD_SH" "${pod_args[@]}")
POD_IP=$(sed -n 's/^POD_IP=//p' <<<"$facts")
VETH=$(sed -n 's/^NODE_VETH_eth0=//p' <<<"$facts")
echo "DEMO_POD=$NAME"
echo "DEMO_POD_IP=$POD_IP"
echo "DEMO_VETH=$VETH"
echo "DEMO_WORK=$WORK"

say "starting podvisor in the pod (console: $WORK/console.log, logs: $WORK/podvisor.log)"
# `ip netns exec` execs node, so $! is podvisor itself. setsid (which execs too: a
# background job is no process group leader) puts it in a session of its own, so
# the terminal's Ctrl-C reaches this script only, which stops podvisor with SIGTERM.
setsid env -i PATH="$PATH" HOSTNAME="$NAME" \
  IMG_SOURCE="$GUEST" IMG_TARGET=guest.qcow2 IMG_RAM_MB=256 \
  PODVISOR_IMAGES_DIR="$WORK/images" PODVISOR_DISK_DIR="$WORK/disk" \
  PODVISOR_USERDATA="$WORK/userdata" PODVISOR_METADATA="$WORK/metadata" \
  PODVISOR_NETWORK=nat-bridge PODVISOR_ACCEL=tcg PODVISOR_STOP_GRACE=30 \
  ip netns exec "$NAME" "$(command -v node)" "$CLI" run >"$WORK/console.log" 2>"$WORK/podvisor.log" &
PODVISOR_PID=$!

# Wait (bounded) for the guest's READY marker on the serial console.
deadline=$((SECONDS + TIMEOUT))
until grep -q 'PODVISOR-GUEST-READY' "$WORK/console.log" 2>/dev/null; do
  if ! kill -0 "$PODVISOR_PID" 2>/dev/null; then
    say "podvisor exited before the guest was ready; its last log lines:"
    tail -n 20 "$WORK/podvisor.log" >&2
    exit 1
  fi
  ((SECONDS < deadline)) || die "the guest was not ready within $TIMEOUT s (see $WORK/console.log)"
  sleep 0.2
done

# The page, from the root namespace, through the pod IP (DNAT to the VM).
page=''
until page=$(curl -sS --max-time 5 "http://$POD_IP/" 2>/dev/null) && [[ $page == *podvisor-test-guest* ]]; do
  ((SECONDS < deadline)) || die "http://$POD_IP/ did not answer within $TIMEOUT s"
  sleep 0.2
done

if [[ -n $CHECK ]]; then
  grep -qx "instance-id: $INSTANCE_ID" <<<"$page" || die "the page lacks instance-id: $INSTANCE_ID: $page"
  grep -qx "hostname: $VM_HOSTNAME" <<<"$page" || die "the page lacks hostname: $VM_HOSTNAME: $page"
  grep -qx "nameserver: 10.96.0.10" <<<"$page" || die "the page lacks the pod's name server: $page"
  curl -sS --max-time 5 "http://$POD_IP:5800/healthz" >/dev/null || die "the control endpoint http://$POD_IP:5800/healthz did not answer"
  say "check passed: http://$POD_IP/ served the guest's page with instance-id $INSTANCE_ID"
  exit 0
fi

cat <<EOF

  podvisor demo: a VM that has taken over the IP of a Calico-style pod
  --------------------------------------------------------------------
  pod            $NAME (network namespace; ip netns exec $NAME ...)
  pod IP         $POD_IP  (every TCP/UDP port goes to the VM, except 5800 and 5900)
  guest page     curl http://$POD_IP/
  VNC            $POD_IP:5900  (qemu's own VNC server: vncviewer $POD_IP::5900;
                 its password: podvisor ctl vnc-password, below)
  control        http://$POD_IP:5800  (e.g. curl http://$POD_IP:5800/v1/vm)
                 unix socket $WORK/disk/.podvisor/control.sock
                 (curl --unix-socket $WORK/disk/.podvisor/control.sock http://x/v1/vm)
  podvisor       export PODVISOR_STATE_DIR=$WORK/disk/.podvisor
                 alias podvisor='node $CLI'
                 podvisor ctl status; podvisor events --follow; podvisor console
  serial console $WORK/console.log  (tail -f)
  podvisor logs  $WORK/podvisor.log

  Ctrl-C shuts the VM down and removes everything.

  The guest's page, fetched just now from this shell:
$(sed 's/^/    /' <<<"$page")

EOF
# In the foreground until Ctrl-C (the INT trap), or until podvisor ends by itself.
rc=0
wait "$PODVISOR_PID" || rc=$?
PODVISOR_PID=''
say "podvisor exited by itself (status $rc)"
exit "$rc"
