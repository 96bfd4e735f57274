#!/usr/bin/env bash
# Runs librdkafka's own integration test suite (tests/test-runner of the
# librdkafka 2.12.1 tree vendored in the crates.io crate rdkafka-sys =4.10.0,
# as in build-rdkafka-performance.sh) against a fresh 3-node `runnel dev`
# cluster, each test number in its own test-runner process, and prints a
# table: test, verdict (PASS/FAIL/TIMEOUT/SKIP), seconds, first failure line.
# Results are judged as against Apache Kafka 3.7.0 (`-V 3.7.0`), quick mode
# (`-Q`), broker tests only (`-L`: local, broker-less tests are left out).
#
#   bench/rdkafka-suite.sh                 # the default list (see below)
#   bench/rdkafka-suite.sh 0001 0012 0030  # these tests
#   SUITE_TESTS="0001 0012" SUITE_TABLE=/tmp/t.md bench/rdkafka-suite.sh
#
# Environment (all optional):
#   SUITE_TESTS    test numbers when no arguments are given
#   SUITE_DIR      work dir (default /tmp/runnel-rdkafka-suite): the built
#                  librdkafka (kept and reused), and one run-<time>/ per run
#                  with logs/NNNN.log, the cluster's log and results
#   SUITE_TABLE    also write the table as Markdown to this file
#   SUITE_JOBS     tests run at once (default 2)
#   SUITE_TIMEOUT  seconds a test may take before its process group is
#                  SIGKILLed (default 480)
#   SUITE_PORT     Kafka port of the first node (default 29092; the nodes take
#                  PORT..PORT+2 and their controllers PORT+100..PORT+102)
#   SUITE_VERSION  broker version the runner assumes (default 3.7.0)
#   SUITE_SCENARIO librdkafka test scenario, default or noautocreate (default:
#                  default); the cluster gets that scenario's broker settings
#                  from librdkafka's tests/scenarios/<scenario>.json, as
#                  trivup would: num.partitions=4, default.replication.factor=3
#                  and auto.create.topics.enable=true|false; and, as trivup
#                  leaves it at Kafka's default, min.insync.replicas=1 (runnel
#                  dev sets 2, and then the tests' replication-factor-1 topics
#                  refuse acks=all produces with NOT_ENOUGH_REPLICAS, as
#                  Kafka would)
#   SUITE_OVERRIDES more broker settings, "key=value key=value"
#   SUITE_ARGS     test-runner arguments (default "-L -Q -V $SUITE_VERSION",
#                  plus "-s $SUITE_SCENARIO" for a scenario other than default)
#   RUNNEL_BIN     the runnel binary (default target/release/runnel of this
#                  repository, built with cargo build --release -p runnel if
#                  absent)
#   SUITE_LIST_ONLY=1  print the default list and exit
#
# Some tests call Kafka's bin/kafka-topics.sh (test_kafka_topics(): --create
# with --config, --alter --partitions, --delete) through KAFKA_PATH and
# BROKERS, which trivup sets; here KAFKA_PATH is a folder whose
# bin/kafka-topics.sh runs `runnel topics` and bin/kafka-acls.sh runs
# `runnel acls` (the same options). Other Kafka scripts (kafka-configs.sh,
# the Java helpers) are absent, so the tests that need them fail with
# "exit status 127".
#
# Ctrl-C (or kill -TERM of this script; a background job started from a
# script ignores SIGINT) kills the running tests and stops the cluster.
#
# Default list: every test number 0000..0150 with at least one test in
# librdkafka's tests/test.c table that the runner would run with the arguments
# above: not TEST_F_LOCAL, not TEST_F_MANUAL, not TEST_F_KNOWN_ISSUE (skipped
# unless -k), in SUITE_SCENARIO, and with a minimum broker version at most
# SUITE_VERSION. Quick mode (-Q) also skips each test's SUB_TEST() parts (only
# SUB_TEST_QUICK() ones run); SUITE_ARGS="-L -V 3.7.0" runs them all.
#
# Verdict of a test number (it may hold several runner tests, e.g.
# 0045_subscribe_update and 0045_subscribe_update_mock): FAIL if any of them
# failed (or the runner crashed or left one running), PASS if any passed,
# SKIP if all were skipped, TIMEOUT if the process was killed at
# SUITE_TIMEOUT or by the runner's own per-test timeout (test.c
# check_test_timeouts, which SIGKILLs the runner).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${SUITE_DIR:-/tmp/runnel-rdkafka-suite}
JOBS=${SUITE_JOBS:-2}
TMOUT=${SUITE_TIMEOUT:-480}
PORT=${SUITE_PORT:-29092}
VERSION=${SUITE_VERSION:-3.7.0}
SCENARIO=${SUITE_SCENARIO:-default}
if [ "$SCENARIO" = default ]; then
    ARGS=${SUITE_ARGS:--L -Q -V $VERSION}
else
    ARGS=${SUITE_ARGS:--L -Q -V $VERSION -s $SCENARIO}
fi
RUNNEL=${RUNNEL_BIN:-$REPO/target/release/runnel}
LIB="$WORK/librdkafka"
TESTS_DIR="$LIB/tests"
NICE="nice -n 10"

log() { echo "[rdkafka-suite $(date +%H:%M:%S)] $*" >&2; }

# ---------------------------------------------------------------- build
# kcat (waits for the brokers) and RapidJSON (without it librdkafka's
# configure leaves out WITH_RAPIDJSON and tests 0053, 0098, 0101 and 0110
# skip themselves): Debian's packages, installed when missing.
install_deps() {
    local want=()
    command -v kcat >/dev/null 2>&1 || want+=(kcat)
    [ -f /usr/include/rapidjson/schema.h ] || want+=(rapidjson-dev)
    [ ${#want[@]} -gt 0 ] || return 0
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    log "installing ${want[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${want[@]}" >/dev/null
}

build_librdkafka() {
    if [ -x "$TESTS_DIR/test-runner" ] && [ -f "$TESTS_DIR/.suite-built" ] &&
        grep -q 'define WITH_RAPIDJSON 1' "$LIB/config.h" 2>/dev/null; then
        return
    fi
    log "building librdkafka's test runner in $LIB (once; several minutes)"
    mkdir -p "$WORK/fetch/src"
    cat > "$WORK/fetch/Cargo.toml" <<'TOML'
[package]
name = "fetch-rdkafka-sys"
version = "0.0.0"
edition = "2021"
[dependencies]
rdkafka-sys = "=4.10.0"
TOML
    echo 'fn main() {}' > "$WORK/fetch/src/main.rs"
    (cd "$WORK/fetch" && cargo fetch -q)
    local src
    src=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -maxdepth 2 -mindepth 2 \
        -type d -name 'rdkafka-sys-4.10.0+2.12.1' | head -1)/librdkafka
    [ -d "$src/tests" ] || { log "no librdkafka source at $src"; exit 1; }
    rm -rf "$LIB" && cp -r "$src" "$LIB"
    (
        cd "$LIB"
        ./configure --disable-ssl --disable-gssapi --disable-sasl --disable-curl >"$WORK/build.log" 2>&1
        $NICE make -j"$JOBS" -C src lib >>"$WORK/build.log" 2>&1
        $NICE make -j"$JOBS" -C src-cpp >>"$WORK/build.log" 2>&1
        $NICE make -j"$JOBS" -C tests build >>"$WORK/build.log" 2>&1
    ) || { log "build failed, see $WORK/build.log"; tail -20 "$WORK/build.log" >&2; exit 1; }
    touch "$TESTS_DIR/.suite-built"
    log "built $TESTS_DIR/test-runner"
}

# The default list, from the runner's own test table (tests/test.c).
default_tests() {
    python3 - "$TESTS_DIR/test.c" "$VERSION" "$SCENARIO" <<'PY'
import re, sys
src = open(sys.argv[1]).read()
ver = [int(x) for x in (sys.argv[2].split(".") + ["0"] * 4)[:4]]
body = src[src.index("struct test tests[] = {"):]
body = body[:body.index("{NULL}")]
body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
keep = set()
for m in re.finditer(r"_TEST\((\d{4})_(\w+),", body):
    # the entry's text: up to the next _TEST( or the end
    nxt = body.find("_TEST(", m.end())
    entry = body[m.end(): nxt if nxt >= 0 else len(body)]
    num = m.group(1)
    flags = entry.split(",")[0]
    if any(f in flags for f in ("TEST_F_LOCAL", "TEST_F_MANUAL")) or \
       re.search(r"TEST_F_KNOWN_ISSUE\b", flags):
        continue
    sc = re.search(r'\.scenario\s*=\s*"([^"]*)"', entry)
    if sys.argv[3] not in (sc.group(1) if sc else "default"):
        continue
    mv = re.search(r"TEST_BRKVER\((\d+),\s*(\d+),\s*(\d+),\s*(\d+)\)", entry)
    if mv and [int(x) for x in mv.groups()] > ver:
        continue
    if "TEST_BRKVER_TOPIC_ADMINAPI" in entry and [0, 10, 2, 0] > ver:
        continue
    if 0 <= int(num) <= 150:
        keep.add(num)
print(" ".join(sorted(keep)))
PY
}

# ---------------------------------------------------------------- cluster
CLUSTER_PGID=
RUN=
stop_cluster() {
    [ -n "$CLUSTER_PGID" ] || return 0
    log "stopping the cluster"
    kill -INT -- "-$CLUSTER_PGID" 2>/dev/null || true
    for _ in $(seq 1 50); do
        kill -0 -- "-$CLUSTER_PGID" 2>/dev/null || break
        sleep 0.2
    done
    kill -KILL -- "-$CLUSTER_PGID" 2>/dev/null || true
    CLUSTER_PGID=
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    # test processes still running (each is its own process group)
    if [ -n "$RUN" ] && [ -d "$RUN/pgid" ]; then
        for f in "$RUN"/pgid/*; do
            [ -f "$f" ] && kill -KILL -- "-$(cat "$f")" 2>/dev/null || true
        done
    fi
    stop_cluster
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The scenario's broker settings (tests/scenarios/*.json is JSON with
# trailing commas), as --override arguments.
scenario_overrides() {
    python3 - "$TESTS_DIR/scenarios/$SCENARIO.json" <<'PY'
import re, sys
txt = open(sys.argv[1]).read()
keys = {"num_partitions": "num.partitions",
        "replication_factor": "default.replication.factor",
        "auto_create_topics": "auto.create.topics.enable"}
for k, v in re.findall(r'"(\w+)"\s*:\s*"?([\w.]+)"?', txt):
    if k in keys:
        print(f"{keys[k]}={v}")
print("min.insync.replicas=1")
PY
}

BROKERS=
start_cluster() {
    if [ ! -x "$RUNNEL" ]; then
        log "building runnel (cargo build --release -p runnel)"
        (cd "$REPO" && $NICE cargo build --release -p runnel)
    fi
    local dir="$RUN/cluster"
    mkdir -p "$dir"
    BROKERS="localhost:$PORT,localhost:$((PORT + 1)),localhost:$((PORT + 2))"
    for p in $PORT $((PORT + 1)) $((PORT + 2)) $((PORT + 100)) $((PORT + 101)) $((PORT + 102)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            log "port $p is in use (another cluster?); set SUITE_PORT"; exit 1
        fi
    done
    [ -f "$TESTS_DIR/scenarios/$SCENARIO.json" ] || { log "no scenario $SCENARIO"; exit 1; }
    local ov=() kv
    for kv in $(scenario_overrides) ${SUITE_OVERRIDES:-}; do ov+=(--override "$kv"); done
    log "starting runnel dev in $dir (Kafka on $BROKERS) with $RUNNEL ${ov[*]}"
    # setsid -f: its own process group, and not a child of this shell (whose
    # `wait`s are for the tests)
    setsid -f bash -c 'echo $$ > "$1"; shift; exec "$@"' _ \
        "$RUN/cluster.pgid" "$RUNNEL" dev --dir "$dir/data" --port "$PORT" "${ov[@]}" \
        >"$dir/runnel.log" 2>&1
    for _ in $(seq 1 50); do [ -s "$RUN/cluster.pgid" ] && break; sleep 0.1; done
    CLUSTER_PGID=$(cat "$RUN/cluster.pgid")
    local n=0
    for _ in $(seq 1 120); do
        n=$(kcat -L -b "$BROKERS" -m 5 2>/dev/null | grep -c '^  broker ' || true)
        [ "$n" = 3 ] && break
        kill -0 "$CLUSTER_PGID" 2>/dev/null || { log "runnel dev exited:"; tail -20 "$dir/runnel.log" >&2; exit 1; }
        sleep 1
    done
    [ "$n" = 3 ] || { log "the cluster lists $n brokers, not 3"; tail -20 "$dir/runnel.log" >&2; exit 1; }
    log "3 brokers up"
}

# ---------------------------------------------------------------- one test
# Runs test $1 in its own process group; writes $RUN/results/$1 as
# "verdict<TAB>seconds<TAB>first failure line".
run_one() {
    local t=$1 out="$RUN/logs/$1.log" start end rc verdict line secs
    start=$(date +%s.%N)
    set +e
    (
        cd "$TESTS_DIR"
        export LD_LIBRARY_PATH="$LIB/src:$LIB/src-cpp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        export RDKAFKA_TEST_CONF="$RUN/test.conf" TEST_KAFKA_VERSION="$VERSION" TESTS="$t"
        export KAFKA_PATH="$RUN/kafka" BROKERS="$BROKERS"
        unset CI
        # shellcheck disable=SC2086
        setsid bash -c 'echo $$ > "$1"; shift; exec timeout -s KILL "$@"' _ \
            "$RUN/pgid/$t" "$TMOUT" ./test-runner $ARGS
    ) >"$out" 2>&1
    rc=$?
    set -e
    end=$(date +%s.%N)
    [ -f "$RUN/pgid/$t" ] && { kill -KILL -- "-$(cat "$RUN/pgid/$t")" 2>/dev/null || true; }
    rm -f "$RUN/pgid/$t"
    secs=$(awk "BEGIN{printf \"%.1f\", $end - $start}")
    read -r verdict line < <(judge "$t" "$out" "$rc" "$secs" "$TMOUT" "$TESTS_DIR/test.c")
    printf '%s\t%s\t%s\n' "$verdict" "$secs" "$line" >"$RUN/results/$t"
}

# Prints "VERDICT first-line" for test $1 from its output $2, exit code $3,
# seconds $4, the suite's timeout $5 and the runner's test table $6.
judge() {
    python3 - "$@" <<'PY'
import re, sys
t, path, rc = sys.argv[1], sys.argv[2], int(sys.argv[3])
secs, limit = float(sys.argv[4]), float(sys.argv[5])
txt = open(path, errors="replace").read()
txt = re.sub(r"\x1b\[[0-9;]*m", "", txt)
lines = txt.splitlines()
states = {}
for l in lines:
    m = re.match(r"^\|\s*(\d{4}_\w+)\s*\|\s*(\w+)\s*\|\s*[\d.]+s\s*\|\s*(.*)$", l)
    if m and m.group(1).startswith(t + "_"):
        states[m.group(1)] = (m.group(2), m.group(3).strip())
def first_failure():
    for i, l in enumerate(lines):
        m = re.search(r'### Test "([^"]+)" failed at ([^:]+:\d+):\S+ at .*###', l)
        if m:
            msg = lines[i + 1].strip() if i + 1 < len(lines) else ""
            msg = re.sub(r"^\S+\(\):\d+: ", "", msg)
            return f"{m.group(1)}: {m.group(2)}: {msg}"
    for l in lines:
        if re.search(r"timed out|Assertion .* failed|Segmentation|AddressSanitizer", l):
            return l.strip()
    return ""
def clean(s):
    return re.sub(r"\s+", " ", s).replace("|", "/")[:300]
ff = first_failure()
if rc in (124, 137) and secs >= limit - 1:
    print("TIMEOUT", clean(f"killed after SUITE_TIMEOUT={limit:.0f}s" + (f"; {ff}" if ff else "")))
elif rc == 137 and "timed out (timeout set to" in ff:
    print("TIMEOUT", clean(ff))
elif any(s in ("FAILED", "RUNNING") for s, _ in states.values()):
    print("FAIL", clean(first_failure() or next(f for s, f in states.values() if s != "PASSED")))
elif not states and rc == 0 and "ALL TESTS PASSED" in txt:
    print("SKIP", "no such test in this test-runner")
elif not states:
    print("FAIL", clean(first_failure() or f"no summary (exit {rc})"))
elif any(s == "PASSED" for s, _ in states.values()):
    if rc != 0:
        print("FAIL", clean(first_failure() or f"exit {rc} after all tests passed"))
    else:
        print("PASS", "")
else:
    reasons = sorted({f"{n}: {f}" for n, (s, f) in states.items() if f})
    if not reasons:  # skipped silently: another scenario (tests/test.c)
        src = open(sys.argv[6]).read()
        for n in states:
            m = re.search(r"_TEST\(" + n + r",(?:(?!_TEST\().)*?\.scenario\s*=\s*\"([^\"]+)\"", src, re.S)
            if m:
                reasons.append(f"{n}: needs scenario {m.group(1)} (SUITE_SCENARIO)")
    print("SKIP", clean("; ".join(reasons)))
PY
}

# ---------------------------------------------------------------- main
main() {
    install_deps
    build_librdkafka
    local tests
    if [ $# -gt 0 ]; then tests="$*"
    elif [ -n "${SUITE_TESTS:-}" ]; then tests=$SUITE_TESTS
    else tests=$(default_tests)
    fi
    if [ -n "${SUITE_LIST_ONLY:-}" ]; then echo "$tests"; exit 0; fi
    RUN="$WORK/run-$(date +%Y%m%d-%H%M%S)"
    mkdir -p "$RUN/logs" "$RUN/results" "$RUN/pgid"
    local t0=$SECONDS
    start_cluster
    printf 'metadata.broker.list=%s\n' "$BROKERS" >"$RUN/test.conf"
    mkdir -p "$RUN/kafka/bin"
    printf '#!/bin/sh\nexec "%s" topics "$@"\n' "$RUNNEL" >"$RUN/kafka/bin/kafka-topics.sh"
    printf '#!/bin/sh\nexec "%s" acls "$@"\n' "$RUNNEL" >"$RUN/kafka/bin/kafka-acls.sh"
    chmod +x "$RUN/kafka/bin/kafka-topics.sh" "$RUN/kafka/bin/kafka-acls.sh"
    log "$(echo "$tests" | wc -w) tests, $JOBS at a time, ${TMOUT}s each at most; logs in $RUN/logs"

    local active=0 t
    for t in $tests; do
        while [ "$active" -ge "$JOBS" ]; do
            wait -n || true
            active=$((active - 1))
        done
        if ! kill -0 "$CLUSTER_PGID" 2>/dev/null; then
            log "the cluster died; see $RUN/cluster/runnel.log"; exit 1
        fi
        log "start $t"
        run_one "$t" &
        active=$((active + 1))
    done
    wait || true

    local pass=0 fail=0 tmo=0 skip=0 v s l
    {
        printf '| test | verdict | seconds | first failure line |\n|---|---|---|---|\n'
        for t in $tests; do
            IFS=$'\t' read -r v s l <"$RUN/results/$t" || { v=FAIL; s=0; l="no result"; }
            printf '| %s | %s | %s | %s |\n' "$t" "$v" "$s" "${l:+\`$l\`}"
        done
    } >"$RUN/table.md"
    printf '%-5s %-7s %7s  %s\n' test verdict seconds 'first failure line'
    for t in $tests; do
        IFS=$'\t' read -r v s l <"$RUN/results/$t" || { v=FAIL; s=0; l="no result"; }
        printf '%-5s %-7s %7s  %s\n' "$t" "$v" "$s" "$l"
        case $v in PASS) pass=$((pass + 1)) ;; FAIL) fail=$((fail + 1)) ;;
            TIMEOUT) tmo=$((tmo + 1)) ;; *) skip=$((skip + 1)) ;; esac
    done
    local total=$((SECONDS - t0))
    local summary="$pass passed, $fail failed, $tmo timed out, $skip skipped in ${total}s ($RUNNEL of $(date -r "$RUNNEL" '+%F %T'))"
    echo "$summary"
    printf '\n%s\n' "$summary" >>"$RUN/table.md"
    if [ -n "${SUITE_TABLE:-}" ]; then cp "$RUN/table.md" "$SUITE_TABLE"; fi
    log "table: $RUN/table.md; logs: $RUN/logs"
}

main "$@"
