#!/usr/bin/env bash
# Produce and consume throughput against the generator's own ceiling, in one
# run (issue: performance). rdkafka_performance sends COUNT × SIZE-byte
# messages, acks=all, linger 5 ms, 1 MiB batches, no compression, to:
#   mock     librdkafka's mock broker (the generator's ceiling on this host)
#   rf1      a 1-node Runnel (replication factor 1)
#   rf3      a 3-node Runnel (replication factor 3, min.insync.replicas 2)
# interleaved, RUNS rounds after one warm-up; then RUNS consumes of COUNT
# messages from each cluster (sendfile from the segment files). Prints each
# run, then a table of medians with each produce figure as a ratio of the
# mock's (and RF 3's of RF 1's).
# Flush policy: Kafka's default (page cache, no fsync before ack).
#
# Usage: bench/produce-bench.sh [SIZE=100] [RUNS=3]
# Environment:
#   BENCH_DIR    where the clusters keep their logs (default: a new
#                directory under /dev/shm, tmpfs, so the figures are the
#                software's; BENCH_DIR=/var/tmp/x for a disk)
#   BENCH_COUNT  messages per run (default 1,000,000)
#   BENCH_PARTITIONS  partitions of the topic (default 1). Above 1 the
#                producer's own partitioner spreads the messages (sticky
#                batches), and the consume runs are skipped; compare with a
#                1-partition run of the same binary (the mock makes its own
#                partitions, so its ratio means less there).
#   RUNNEL_BIN   the binary to measure (default: target/release/runnel,
#                built first)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-100}
RUNS=${2:-3}
COUNT=${BENCH_COUNT:-1000000}
PARTITIONS=${BENCH_PARTITIONS:-1}
if [ "$PARTITIONS" = 1 ]; then ONE_PARTITION=(-p 0); else ONE_PARTITION=(); fi
PERF=$(bench/build-rdkafka-performance.sh)
if [ -z "${RUNNEL_BIN:-}" ]; then
    cargo build --release -q -p runnel
fi
R=${RUNNEL_BIN:-target/release/runnel}
WORK=${BENCH_DIR:-$(mktemp -d /dev/shm/runnel-bench.XXXXXX)}
mkdir -p "$WORK"
RESULTS=$(mktemp)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK" "$RESULTS"' EXIT
$R dev --dir "$WORK/one" --nodes 1 --port 19092 >"$WORK/one.log" 2>&1 &
$R dev --dir "$WORK/three" --nodes 3 --port 29092 >"$WORK/three.log" 2>&1 &
# Topic creation retries until the clusters answer (no sleep stands in).
create() { # port rf
    for _ in $(seq 100); do
        if $R topics --bootstrap-server "localhost:$1" --create --topic bench \
            --partitions "$PARTITIONS" --replication-factor "$2" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    echo "cannot create the topic on port $1" >&2
    exit 1
}
produce() { # name args...
    local name=$1; shift
    local line
    line=$("$PERF" -P -t bench "${ONE_PARTITION[@]}" -s "$SIZE" -c "$COUNT" -a -1 -X linger.ms=5 -X batch.size=1048576 \
        -X queue.buffering.max.messages=2000000 -X enable.idempotence=false -X compression.type=none "$@" 2>&1 \
        | grep "messages produced" | tail -1 | grep -o "[0-9]* msgs/s and [0-9.]* MB/s")
    echo "$name produce: $line"
    echo "produce $name ${line%% *}" >>"$RESULTS"
}
consume() { # name args...
    local name=$1; shift
    local line
    line=$("$PERF" -C -t bench -p 0 -o beginning -c "$COUNT" "$@" 2>&1 \
        | grep "consumed in" | tail -1 | grep -o "[0-9]* msgs/s ([0-9.]* MB/s)")
    echo "$name consume: $line"
    echo "consume $name ${line%% *}" >>"$RESULTS"
}
# Each round writes to a new topic: on tmpfs the logs live in memory, and
# rounds piling up gigabytes there slowed the later ones (memory pressure,
# not software).
fresh() { # port rf
    $R topics --bootstrap-server "localhost:$1" --delete --topic bench >/dev/null 2>&1 || true
    create "$1" "$2"
}
round() {
    produce mock -b 127.0.0.1:1 -X test.mock.num.brokers=1
    fresh 19092 1
    produce rf1 -b 127.0.0.1:19092
    fresh 29092 3
    produce rf3 -b 127.0.0.1:29092
}
round >/dev/null # warm-up
: >"$RESULTS"
for _ in $(seq "$RUNS"); do round; done
# Consumers read what the rounds wrote. (The mock cannot be the consume
# ceiling: it keeps nothing between processes.)
if [ "$PARTITIONS" = 1 ]; then
    for _ in $(seq "$RUNS"); do
        consume rf1 -b 127.0.0.1:19092
        consume rf3 -b 127.0.0.1:29092
    done
fi
python3 - "$RESULTS" "$SIZE" "$COUNT" "$PARTITIONS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
med = {}
for kind, name, rate in rows:
    med.setdefault((kind, name), []).append(int(rate))
med = {k: statistics.median(v) for k, v in med.items()}
size = int(sys.argv[2])
def fmt(r):
    return f"{r/1e3:,.0f} k msg/s ({r*size/1e6:,.0f} MB/s)"
mock = med.get(("produce", "mock"))
rf1 = med.get(("produce", "rf1"))
print(f"\nmedians of {sys.argv[3]} x {size} B, acks=all, {sys.argv[4]} partition(s)")
print("| figure | rate | ratio |")
print("|---|---|---|")
print(f"| produce, mock (ceiling) | {fmt(mock)} | 1.00 |")
print(f"| produce, Runnel RF 1 | {fmt(rf1)} | {rf1/mock:.2f} of the mock |")
rf3 = med.get(("produce", "rf3"))
print(f"| produce, Runnel RF 3 | {fmt(rf3)} | {rf3/mock:.2f} of the mock, {rf3/rf1:.2f} of RF 1 |")
for name in ("rf1", "rf3"):
    c = med.get(("consume", name))
    if c:
        print(f"| consume, Runnel {name.upper().replace('RF', 'RF ')} | {fmt(c)} | — |")
PY
