#!/usr/bin/env bash
# Runs the README's quick start exactly as written, as a newcomer would: the
# first ```sh block of "## Quick start" (starts the dev cluster) in the
# background, then, once it prints its bootstrap servers, the second block
# (kcat) line by line. Fails if any command fails, if the consumer does not
# read back what the producer wrote, or if Ctrl-C does not stop the cluster.
# CI runs it (scripts/test-all.sh), so a README command that breaks fails CI.
set -euo pipefail
cd "$(dirname "$0")/.."

# The ```sh blocks of the Quick start section, in order, NUL-separated.
blocks() {
    awk '
        /^## Quick start/ { inside = 1; next }
        /^## / && inside { exit }
        inside && /^```sh/ { block = 1; next }
        inside && /^```/ && block { block = 0; printf "%c", 0; next }
        inside && block { print }
    ' README.md
}
mapfile -d '' quick < <(blocks)
if [ "${#quick[@]}" -lt 2 ]; then
    echo "readme-quickstart: README.md's Quick start has fewer than two sh blocks" >&2
    exit 1
fi
start_cmd=${quick[0]}
client_cmds=${quick[1]}

work=$(mktemp -d)
cleanup() {
    if [ -n "${pgid:-}" ] && kill -0 "-$pgid" 2>/dev/null; then kill -KILL "-$pgid" 2>/dev/null || true; fi
    rm -rf "$work" runnel-dev
}
if [ -e runnel-dev ]; then
    # The quick start writes ./runnel-dev; never delete a developer's data.
    echo "readme-quickstart: ./runnel-dev exists (a dev cluster's data): move it aside first" >&2
    exit 1
fi
trap cleanup EXIT

echo "readme-quickstart: \$ $start_cmd"
# Its own process group, so Ctrl-C (SIGINT) reaches cargo and the node as a
# terminal's would.
setsid bash -c "$start_cmd" >"$work/dev.out" 2>"$work/dev.err" &
pgid=$!
# The release build comes first: allow for it.
for _ in $(seq 1 1800); do
    if grep -q "bootstrap servers" "$work/dev.out"; then break; fi
    if ! kill -0 "$pgid" 2>/dev/null; then
        echo "readme-quickstart: the dev cluster exited early" >&2
        tail -20 "$work/dev.err" >&2
        exit 1
    fi
    sleep 1
done
grep -q "bootstrap servers" "$work/dev.out" || { echo "readme-quickstart: no bootstrap servers printed" >&2; exit 1; }
cat "$work/dev.out"

last_out=""
while IFS= read -r line; do
    [ -n "$line" ] || continue
    echo "readme-quickstart: \$ $line"
    last_out=$(timeout 120 bash -euo pipefail -c "$line" 2>"$work/client.err") || {
        echo "readme-quickstart: failed: $line" >&2
        cat "$work/client.err" >&2
        exit 1
    }
    echo "$last_out" | head -20
done <<<"$client_cmds"

# The last command consumes what `seq 1 10` produced.
if [ "$(echo "$last_out" | grep -cE '^([1-9]|10)$')" != 10 ]; then
    echo "readme-quickstart: the consumer did not read 1..10 back" >&2
    exit 1
fi

kill -INT "-$pgid"
for _ in $(seq 1 30); do
    kill -0 "$pgid" 2>/dev/null || break
    sleep 1
done
if kill -0 "$pgid" 2>/dev/null; then
    echo "readme-quickstart: Ctrl-C did not stop the dev cluster" >&2
    exit 1
fi
grep -q stopping "$work/dev.out" || { echo "readme-quickstart: the cluster did not say it stopped" >&2; exit 1; }
echo "readme-quickstart: ok"
