#!/usr/bin/env bash
# Produce latency, acks=all, at a fixed rate: the librdkafka mock broker
# (the generator's own floor on this host) and a 3-node Runnel (RF 3, min
# ISR 2), one after the other in one run. rdkafka_performance's `-l -A`
# records each message's send-to-delivery-report time; the first half of
# the run (client start, connection and metadata: ~1 s at the start) is
# left out, and p50 / p99 / p999 / max of the rest are printed.
#
# Usage: bench/latency-bench.sh [RATE=5000] [SIZE=1024] [COUNT=40000] [LINGER_MS=0]
# Environment: BENCH_DIR (default: a new directory under /dev/shm),
# RUNNEL_BIN (default: target/release/runnel, built first), PARTITIONS
# (default "1": the partition counts of the Runnel runs, each its own RF 3
# topic; above 1 the messages are spread by librdkafka's partitioner, as
# issue 17's "1 and 100 partitions at a fixed rate"), IDEMPOTENT (default
# false).
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-5000}
SIZE=${2:-1024}
COUNT=${3:-40000}
LINGER=${4:-0}
PARTITIONS=${PARTITIONS:-1}
IDEMPOTENT=${IDEMPOTENT:-false}
PERF=$(bench/build-rdkafka-performance.sh)
if [ -z "${RUNNEL_BIN:-}" ]; then
    cargo build --release -q -p runnel
fi
R=${RUNNEL_BIN:-target/release/runnel}
WORK=${BENCH_DIR:-$(mktemp -d /dev/shm/runnel-latency.XXXXXX)}
mkdir -p "$WORK"
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
$R dev --dir "$WORK/three" --nodes 3 --port 29092 >"$WORK/three.log" 2>&1 &
for p in $PARTITIONS; do
    for _ in $(seq 100); do
        if $R topics --bootstrap-server localhost:29092 --create --topic "lat$p" \
            --partitions "$p" --replication-factor 3 >/dev/null 2>&1; then
            break
        fi
        sleep 0.2
    done
done
measure() { # name topic args...
    local name=$1 topic=$2; shift 2
    "$PERF" -P -t "$topic" -s "$SIZE" -c "$COUNT" -r "$RATE" -l -A "$WORK/$name.lat" -a -1 \
        -X linger.ms="$LINGER" -X enable.idempotence="$IDEMPOTENT" "$@" >/dev/null 2>&1
    python3 - "$WORK/$name.lat" "$name" <<'PY'
import sys
raw = [int(l) for l in open(sys.argv[1]) if l.strip()]
v = sorted(raw[len(raw) // 2:])
n = len(v)
p = lambda q: v[min(n - 1, int(q * n))] / 1000
print(f"| {sys.argv[2]} | {n} | {p(.5):.2f} | {p(.99):.2f} | {p(.999):.2f} | {v[-1] / 1000:.2f} |")
PY
}
echo "acks=all, $SIZE B, $RATE msg/s, linger.ms=$LINGER, idempotence=$IDEMPOTENT; latency in ms over the second half of $COUNT messages"
echo "| target | messages | p50 | p99 | p999 | max |"
echo "|---|---|---|---|---|---|"
measure mock lat -p 0 -b 127.0.0.1:1 -X test.mock.num.brokers=3
for p in $PARTITIONS; do
    # One partition: always partition 0; more: the partitioner spreads them.
    spread=(-p 0)
    if [ "$p" -gt 1 ]; then spread=(); fi
    measure "runnel-rf3-${p}p" "lat$p" "${spread[@]}" -b 127.0.0.1:29092
done
