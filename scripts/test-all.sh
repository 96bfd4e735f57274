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

cargo build --workspace --all-targets
# Model checks: bounded configurations (deeper runs: see specs/replication.md).
cargo test --workspace -- --nocapture
