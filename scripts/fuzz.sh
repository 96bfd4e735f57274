#!/usr/bin/env bash
# Fuzzing (fuzz/, cargo-fuzz + libFuzzer) on the stable toolchain.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]      (default 60)
#
# Installs cargo-fuzz if it is missing, builds the targets, replays every
# input in fuzz/regressions/<target>/ and fuzz/seeds/<target>/, then fuzzes
# each target for SECONDS_PER_TARGET with a working corpus in
# $CARGO_TARGET_DIR/fuzz/corpus/<target> (kept between runs, never
# committed; crash inputs go to .../fuzz/artifacts/<target>/). Prints per
# target: executions, exec/s, corpus size, crashes. Exits non-zero if any
# input crashed (a panic, an abort, a timeout or running out of memory).
#
# Environment:
#   FUZZ_TARGETS      targets to run (default: all four)
#   FUZZ_SANITIZER    none (default) or address: AddressSanitizer needs
#                     -Zsanitizer, which the stable toolchain accepts only
#                     with RUSTC_BOOTSTRAP=1 (set here for that case)
#   FUZZ_SKIP_REPLAY  1: fuzz without replaying first
#   FUZZ_ARGS         extra libFuzzer arguments (e.g. -jobs=... -workers=...)
#   FUZZ_SUMMARY_FILE a Markdown file to append each target's result to as
#                     soon as its run ends (a table row)
#   CARGO_TARGET_DIR  build and work directory (default: ./target)
#
# The hour-long run of specs/testing.md is scripts/fuzz.sh 900 (four
# targets, 15 minutes each) or, one target for an hour,
# FUZZ_TARGETS=batch_check scripts/fuzz.sh 3600.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
seconds=${1:-60}
read -r -a targets <<<"${FUZZ_TARGETS:-kafka_request internal_frame batch_check segment_recovery}"
sanitizer=${FUZZ_SANITIZER:-none}
# Absolute: cargo fuzz builds from fuzz/.
CARGO_TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-$root/target}")
export CARGO_TARGET_DIR
work=$CARGO_TARGET_DIR/fuzz
triple=x86_64-unknown-linux-gnu
bin=$CARGO_TARGET_DIR/$triple/release
read -r -a extra_args <<<"${FUZZ_ARGS:-}"

started=$(date +%s)
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install --locked -q cargo-fuzz
fi

# Release build with debug assertions and overflow checks (-a): an
# arithmetic overflow is a crash here even though it wraps in the shipped
# binary. 16 codegen units: the build is most of a short run's time.
echo "== building fuzz targets (sanitizer: $sanitizer)"
if [ "$sanitizer" != none ]; then
    export RUSTC_BOOTSTRAP=1
fi
(cd fuzz && cargo fuzz build -O -a -s "$sanitizer" --codegen-units 16 --target "$triple")
echo "   built in $(($(date +%s) - started)) s"

# An input in hex (its first 200 bytes).
hex() {
    head -c 200 "$1" | od -An -v -tx1 | tr -d ' \n'
}

# libFuzzer's output less its progress and warnings (what a crash said).
noise() {
    grep -v '^INFO:\|^Running:\|^Executed\|^WARNING: Failed to find\|NEW_FUNC\|^ *[0-9]*: \|^ *at \|^stack backtrace\|^note: Some details' "$1" || true
}

# Every input of a directory, each in a fresh process (a crash names its
# input). Prints how many ran; returns non-zero if any crashed.
replay() {
    local target=$1 dir=$2 failed=0 count=0 out
    [ -d "$dir" ] || return 0
    out=$(mktemp)
    for input in "$dir"/*; do
        [ -f "$input" ] || continue
        case "$(basename "$input")" in .* | README*) continue ;; esac
        count=$((count + 1))
        if ! "$bin/$target" -timeout=10 -rss_limit_mb=2048 \
            -artifact_prefix="$work/artifacts/replay-$target-" "$input" >"$out" 2>&1; then
            failed=$((failed + 1))
            echo "!! $target crashed on $input ($(hex "$input")):"
            noise "$out" | head -20
        fi
    done
    rm -f "$out"
    echo "   $target: $count inputs of $dir replayed, $failed crashed"
    [ "$failed" = 0 ]
}

status=0
declare -A summary
if [ "${FUZZ_SKIP_REPLAY:-0}" != 1 ]; then
    echo "== replaying regressions and seeds"
    mkdir -p "$work/artifacts"
    for t in "${targets[@]}"; do
        replay "$t" "fuzz/regressions/$t" || status=1
        replay "$t" "fuzz/seeds/$t" || status=1
    done
fi

echo "== fuzzing each target for $seconds s"
for t in "${targets[@]}"; do
    corpus=$work/corpus/$t
    artifacts=$work/artifacts/$t
    log=$work/logs/$t.log
    mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
    touch "$log.start"
    t0=$(date +%s)
    rc=0
    # New inputs go to the working corpus (first directory); the seeds are
    # read only. Regressions are not in the corpus: they were replayed.
    "$bin/$t" "$corpus" "fuzz/seeds/$t" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" \
        "${extra_args[@]}" >"$log" 2>&1 || rc=$?
    found=$(find "$artifacts" -type f -newer "$log.start")
    crashes=$(grep -c . <<<"$found" || true)
    if [ "$rc" != 0 ] && [ "$crashes" = 0 ]; then crashes=1; fi
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
    elapsed=$(($(date +%s) - t0))
    if [ -n "$execs" ] && [ "${rate:-0}" = 0 ] && [ "$elapsed" -gt 0 ]; then
        rate=$((execs / elapsed))
    fi
    corp=$(grep -o 'corp: [0-9]*/[0-9]*[a-zA-Z]*' "$log" | tail -1 | sed 's/corp: //' || true)
    files=$(find "$corpus" -type f | wc -l)
    summary[$t]="executions ${execs:-?} in ${elapsed} s, exec/s ${rate:-?}, corpus ${corp:-?} (entries/bytes; $files files in $corpus), crashes $crashes"
    echo "   $t: ${summary[$t]}"
    if [ -n "${FUZZ_SUMMARY_FILE:-}" ]; then
        if ! grep -q '^| target |' "$FUZZ_SUMMARY_FILE" 2>/dev/null; then
            {
                echo "| target | ended (UTC) | seconds | executions | exec/s | corpus (entries/bytes) | corpus files | crashes |"
                echo "|---|---|---|---|---|---|---|---|"
            } >>"$FUZZ_SUMMARY_FILE"
        fi
        echo "| $t | $(date -u '+%Y-%m-%d %H:%M') | $elapsed | ${execs:-?} | ${rate:-?} | ${corp:-?} | $files | $crashes$([ "$crashes" != 0 ] && echo " (see $log)") |" >>"$FUZZ_SUMMARY_FILE"
    fi
    if [ "$crashes" != 0 ]; then
        status=1
        echo "!! $t crashed (log: $log):"
        noise "$log" | grep -v '^#[0-9]\|^0x\|^\\' | head -30
        for a in $found; do
            echo "   $a: $(hex "$a")"
        done
    fi
done

echo "== summary (${seconds} s per target, $(($(date +%s) - started)) s in all)"
for t in "${targets[@]}"; do
    echo "   $t: ${summary[$t]}"
done
if [ "$status" != 0 ]; then
    echo "FAILED: a target crashed (inputs above; save them under fuzz/regressions/<target>/)" >&2
fi
exit "$status"
