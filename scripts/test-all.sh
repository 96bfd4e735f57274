#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need,
# then builds and runs everything. CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# The node must never link the model checker.
normal_deps=$(cargo tree -p runnel -e normal --prefix none)
if grep -q '^stateright' <<<"$normal_deps"; then
    echo "error: the runnel binary depends on stateright (cargo tree -p runnel -e normal)" >&2
    exit 1
fi

# Real Kafka clients the cluster tests drive: kcat (Debian) and the Python
# clients (a venv in .venv); mkfs.ext4 for the disk-fault tests (e2fsprogs).
# Installed only when missing.
if ! command -v kcat >/dev/null 2>&1 || ! command -v mkfs.ext4 >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq kcat e2fsprogs >/dev/null
fi
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import confluent_kafka, kafka, aiokafka' 2>/dev/null; then
    python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check confluent-kafka kafka-python aiokafka
fi

cargo fmt --all -- --check
cargo fmt --manifest-path sim/Cargo.toml -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
cargo build --workspace --all-targets
# Lints, where the toolchain has clippy (it cannot be fetched on every machine).
if cargo clippy --version >/dev/null 2>&1; then
    cargo clippy --workspace --all-targets -q -- -D warnings
else
    echo "note: cargo clippy not installed; lints skipped" >&2
fi
# The quick start's release build (readme-quickstart.sh below runs the
# README's `cargo run --release`, which then finds it done), made in the
# background at the lowest priority while the tests run: the cluster tests
# wait on sockets and timers most of the time and leave a core idle, which
# saves ~4 min of a CI run. Cargo locks target/debug and target/release
# separately, so the two builds do not wait for each other.
release_log=$(mktemp)
nice -n 19 cargo build --release -p runnel >"$release_log" 2>&1 &
release_build=$!
# Model checks: bounded configurations (deeper runs: see specs/replication.md).
# Cluster tests start real runnel processes (target/debug/runnel, built above).
cargo test --workspace -- --nocapture
# The deterministic simulation: the node built with its `sim` feature (its
# own workspace, so the feature never reaches the binary above), sharing the
# target directory so that common dependencies are built once.
CARGO_TARGET_DIR="$PWD/target" cargo test --manifest-path sim/Cargo.toml -- --nocapture
# The bounded fuzz run of CI is tests/tests/fuzz_bounded.rs, in the cargo
# test above (every fuzz target's regressions and seeds, then 15 s of
# mutations per target). libFuzzer itself (cargo-fuzz install and four
# instrumented builds, ~7 min on a fresh 2-core machine) is left to
# RUNNEL_FUZZ_SECONDS=N (N s per target) and to the hour-long run of
# specs/testing.md.
if [ -n "${RUNNEL_FUZZ_SECONDS:-}" ]; then
    ./scripts/fuzz.sh "$RUNNEL_FUZZ_SECONDS"
fi
if ! wait "$release_build"; then
    cat "$release_log" >&2
    echo "error: the release build failed" >&2
    exit 1
fi
rm -f "$release_log"
# The README's quick start, exactly as written (release build, dev cluster, kcat).
./scripts/readme-quickstart.sh
