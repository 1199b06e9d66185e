#!/usr/bin/env bash
# Pull benchmark (issue 5): the time to pull a 1 GiB image from a loopback HTTP
# server with sha256 verification on, `podvisor image pull` against
# `curl -o` followed by `sha256sum`, in the same run, alternating, RUNS times.
# The ratio is curl+sha256sum time / podvisor time: 1.0 or more means podvisor
# is at least as fast. Needs the build (make build). Results: docs/benchmarks.md.
#   bench/pull/run.sh            # 1 GiB, 5 runs each
#   SIZE_MB=256 RUNS=3 bench/pull/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE_MB=${SIZE_MB:-1024}
RUNS=${RUNS:-5}
WORK=.bench/pull
mkdir -p "$WORK"
SRC=$WORK/source-${SIZE_MB}M.raw
if [ ! -f "$SRC" ] || [ "$(stat -c %s "$SRC")" != $((SIZE_MB * 1024 * 1024)) ]; then
  head -c $((SIZE_MB * 1024 * 1024)) /dev/urandom > "$SRC.tmp" && mv "$SRC.tmp" "$SRC"
fi
EXPECTED=$(sha256sum "$SRC" | cut -d' ' -f1)
cat "$SRC" > /dev/null   # both clients read the served file from the page cache

rm -f "$WORK/port"
node bench/pull/serve.mjs "$SRC" "$WORK/port" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$WORK/out" "$WORK/images"' EXIT
for _ in $(seq 50); do [ -s "$WORK/port" ] && break; sleep 0.1; done
URL="http://127.0.0.1:$(cat "$WORK/port")/image.raw"

now() { date +%s.%N; }
curl_times=(); pv_times=()
for i in $(seq "$RUNS"); do
  rm -rf "$WORK/out" "$WORK/images"; mkdir -p "$WORK/out"; sync
  t0=$(now)
  curl -sS -o "$WORK/out/image.raw" "$URL"
  got=$(sha256sum "$WORK/out/image.raw" | cut -d' ' -f1)
  t1=$(now)
  [ "$got" = "$EXPECTED" ] || { echo "curl: sha256 mismatch" >&2; exit 1; }
  curl_times+=("$(echo "$t1 - $t0" | bc)")
  rm -rf "$WORK/out"; sync

  t0=$(now)
  node apps/supervisord/dist/bundle/podvisor.cjs image pull "$URL" --images-dir "$PWD/$WORK/images" --target image.raw --format raw --sha256 "$EXPECTED" --json > "$WORK/pull.json"
  t1=$(now)
  grep -q "\"sha256\":\"$EXPECTED\"" "$WORK/pull.json" || { echo "podvisor: unexpected result: $(cat "$WORK/pull.json")" >&2; exit 1; }
  pv_times+=("$(echo "$t1 - $t0" | bc)")
  echo "run $i: curl+sha256sum ${curl_times[-1]} s, podvisor image pull ${pv_times[-1]} s" >&2
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
mc=$(median "${curl_times[@]}"); mp=$(median "${pv_times[@]}")
echo "size: ${SIZE_MB} MiB, runs: $RUNS (medians)"
echo "curl -o + sha256sum:   $mc s  ($(echo "scale=0; $SIZE_MB / $mc" | bc) MiB/s)"
echo "podvisor image pull:   $mp s  ($(echo "scale=0; $SIZE_MB / $mp" | bc) MiB/s)"
echo "ratio (curl / podvisor, >= 1.0 is the target): $(echo "scale=2; $mc / $mp" | bc)"
