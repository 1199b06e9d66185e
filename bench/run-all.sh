#!/usr/bin/env bash
# Runs every benchmark in bench/ (make bench; needs the build and the test guest).
# Each prints its own table; docs/benchmarks.md records the results with the date.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "## startup";        node bench/startup/run.mjs "${STARTUP_RUNS:-10}"
echo "## network setup";  node bench/network-setup/run.mjs
echo "## control";        node bench/control/run.mjs
echo "## image pull";     bench/pull/run.sh
echo "## container";      node bench/container/startup.mjs "${CONTAINER_RUNS:-2}"
echo "## idle RSS";       node bench/container/idle-rss.mjs
echo "## container privileges"; bench/container/privileges.sh
echo "## lifecycle";      node bench/lifecycle/run.mjs "${LIFECYCLE_RUNS:-3}"
echo "## l2 segment";     node bench/l2-segment/run.mjs "${L2_SEGMENT_ROUNDS:-3}"
