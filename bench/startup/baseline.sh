#!/usr/bin/env bash
# The alternative podvisor is measured against: what the seeds' entrypoints do.
# Runs the given qemu command line and connects to its QMP socket (greeting +
# qmp_capabilities), then prints "QMP connected" and quits qemu.
set -euo pipefail
sock=$1; shift
rm -f "$sock"
"$@" >/dev/null 2>&1 &
qemu=$!
until printf '{"execute":"qmp_capabilities"}\n' | socat -t 1 - "UNIX-CONNECT:$sock" 2>/dev/null | grep -q '"return"'; do
  kill -0 "$qemu" 2>/dev/null || { echo "qemu exited" >&2; exit 1; }
done
echo "QMP connected"
printf '{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n' | socat -t 1 - "UNIX-CONNECT:$sock" >/dev/null 2>&1 || true
wait "$qemu" || true
