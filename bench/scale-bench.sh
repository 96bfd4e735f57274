#!/usr/bin/env bash
# Partition scale on a 3-node `runnel dev` cluster (one process, logs on
# tmpfs, the open-files limit lowered to OPEN_FILES): for each partition
# count, one RF 3 topic is created and, once every partition has a leader
# and a full ISR and SETTLE_S seconds have passed (the creation's own work,
# 30,000 logs opened at 10,000 partitions, ends about 4 s after the answer),
# the process is measured idle (no client connected): CPU time over IDLE_S
# seconds as % of one core, RSS, open descriptors. Then the process is
# stopped (SIGTERM) and started again over the same data, and the time until
# every partition has a leader again is printed (restart to serving).
#
# Usage: bench/scale-bench.sh [PARTITIONS...]   (default: 1000)
# Environment: IDLE_S (default 10), SETTLE_S (default 5), OPEN_FILES
# (default 4096, the issue's goal), BENCH_DIR (default: a new directory
# under /dev/shm), RUNNEL_BIN (default: target/release/runnel, built first).
set -euo pipefail
cd "$(dirname "$0")/.."
IDLE_S=${IDLE_S:-10}
SETTLE_S=${SETTLE_S:-5}
OPEN_FILES=${OPEN_FILES:-4096}
if [ -z "${RUNNEL_BIN:-}" ]; then
    cargo build --release -q -p runnel
fi
R=${RUNNEL_BIN:-target/release/runnel}
WORK=${BENCH_DIR:-$(mktemp -d /dev/shm/runnel-scale.XXXXXX)}
mkdir -p "$WORK"
trap 'J=$(jobs -p); [ -z "$J" ] || kill $J 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
BOOT=localhost:29092
TICKS=$(getconf CLK_TCK)

now_ms() { date +%s%3N; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Partitions of topic `scale` that have a leader, and that have 3 in the ISR.
led() { $R topics --bootstrap-server $BOOT --describe --topic scale 2>/dev/null |
    grep -c 'Leader: [0-9]' || true; }
full() { $R topics --bootstrap-server $BOOT --describe --topic scale 2>/dev/null |
    grep -cE 'Isr: [0-9]+,[0-9]+,[0-9]+' || true; }
# Waits (polling, bounded by 300 s) until `$1` prints at least $2.
wait_for() {
    local deadline=$(($(date +%s) + 300))
    until [ "$($1)" -ge "$2" ]; do
        [ "$(date +%s)" -lt "$deadline" ] || { echo "timed out waiting for $1 >= $2" >&2; exit 1; }
        sleep 0.2
    done
}
start() {
    (ulimit -n "$OPEN_FILES" && exec $R dev --dir "$WORK/data" --nodes 3 --port 29092) \
        >>"$WORK/dev.log" 2>&1 &
    PID=$!
    until $R topics --bootstrap-server $BOOT --list >/dev/null 2>&1; do sleep 0.1; done
}

echo "| partitions (RF 3) | create to all led (s) | idle CPU (% of one core) | RSS (MB) | descriptors | restart to all led (s) |"
echo "|---|---|---|---|---|---|"
for N in "${@:-1000}"; do
    rm -rf "$WORK/data"
    start
    t0=$(now_ms)
    $R topics --bootstrap-server $BOOT --create --topic scale --partitions "$N" \
        --replication-factor 3 >/dev/null
    wait_for led "$N"
    created=$(( $(now_ms) - t0 ))
    wait_for full "$N"
    sleep "$SETTLE_S" # a measurement choice (idle means after creation), not a wait for an event
    c0=$(cpu_ticks $PID)
    sleep "$IDLE_S" # the measurement window itself, not a wait for an event
    c1=$(cpu_ticks $PID)
    idle=$(python3 -c "print(f'{($c1 - $c0) * 100 / $TICKS / $IDLE_S:.1f}')")
    rss=$(awk '/VmRSS/ {print int($2 / 1024)}' "/proc/$PID/status")
    fds=$(ls "/proc/$PID/fd" | wc -l)
    kill -TERM $PID
    wait $PID 2>/dev/null || true
    t0=$(now_ms)
    start
    wait_for led "$N"
    restarted=$(( $(now_ms) - t0 ))
    kill -TERM $PID
    wait $PID 2>/dev/null || true
    python3 -c "print(f'| {$N:,} | {$created / 1000:.1f} | $idle | $rss | {$fds:,} | {$restarted / 1000:.1f} |')"
done
