#!/usr/bin/env bash
# First produce numbers (issue: networked node): rdkafka_performance, 1 M ×
# SIZE-byte messages, acks=all, against librdkafka's mock broker (the
# generator's ceiling), a 1-node Runnel (RF 1) and a 3-node Runnel (RF 3,
# min.insync.replicas 2), interleaved, RUNS rounds after one warm-up.
# Flush policy: Kafka's default (page cache, no fsync before ack).
# Then RUNS consume runs of 1 M messages from each cluster.
# Usage: bench/produce-bench.sh [SIZE=100] [RUNS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-100}
RUNS=${2:-3}
PERF=$(bench/build-rdkafka-performance.sh)
cargo build --release -q -p runnel
R=target/release/runnel
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT
$R dev --dir "$WORK/one" --nodes 1 --port 19092 >"$WORK/one.log" 2>&1 &
$R dev --dir "$WORK/three" --nodes 3 --port 29092 >"$WORK/three.log" 2>&1 &
sleep 4
$R topics --bootstrap-server localhost:19092 --create --topic bench --partitions 1 --replication-factor 1 >/dev/null
$R topics --bootstrap-server localhost:29092 --create --topic bench --partitions 1 --replication-factor 3 >/dev/null
sleep 1
run() { # target args...
    local name=$1; shift
    "$PERF" -P -t bench -p 0 -s "$SIZE" -c 1000000 -a -1 -X linger.ms=5 -X batch.size=1048576 \
        -X queue.buffering.max.messages=2000000 -X enable.idempotence=false -X compression.type=none "$@" 2>&1 \
        | grep "messages produced" | tail -1 | grep -o "[0-9]* msgs/s and [0-9.]* MB/s" | sed "s/^/$name: /"
}
round() {
    run mock -b 127.0.0.1:1 -X test.mock.num.brokers=1
    run runnel-1-node -b 127.0.0.1:19092
    run runnel-3-nodes-rf3 -b 127.0.0.1:29092
}
consume() { # name port
    "$PERF" -C -t bench -p 0 -o beginning -c 1000000 -b "127.0.0.1:$2" 2>&1 \
        | grep "consumed in" | tail -1 | grep -o "[0-9]* msgs/s ([0-9.]* MB/s)" | sed "s/^/$1 consume: /"
}
round >/dev/null # warm-up
for i in $(seq "$RUNS"); do round; done
# Consumers read what the rounds wrote (sendfile from the segment files).
for i in $(seq "$RUNS"); do
    consume runnel-1-node 19092
    consume runnel-3-nodes-rf3 29092
done
