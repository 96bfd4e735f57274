#!/usr/bin/env bash
# Builds librdkafka's rdkafka_performance (the neutral load generator, see
# shared/reference/benchmarking.md) from the librdkafka tree vendored in the
# crates.io crate rdkafka-sys. Prints the binary's path. Nothing is vendored
# in this repository.
set -euo pipefail
OUT=${1:-/tmp/runnel-bench}
BIN="$OUT/librdkafka/examples/rdkafka_performance"
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi
mkdir -p "$OUT/fetch/src"
cat > "$OUT/fetch/Cargo.toml" <<'TOML'
[package]
name = "fetch-rdkafka-sys"
version = "0.0.0"
edition = "2021"
[dependencies]
rdkafka-sys = "=4.10.0"
TOML
echo 'fn main() {}' > "$OUT/fetch/src/main.rs"
(cd "$OUT/fetch" && cargo fetch -q)
SRC=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -maxdepth 1 -mindepth 1 -type d | head -1)/rdkafka-sys-4.10.0+2.12.1/librdkafka
rm -rf "$OUT/librdkafka" && cp -r "$SRC" "$OUT/librdkafka"
cd "$OUT/librdkafka"
./configure --disable-ssl --disable-gssapi --disable-sasl --disable-curl >/dev/null
make -s -C src lib >/dev/null 2>&1
make -s -C examples rdkafka_performance >/dev/null 2>&1
echo "$BIN"
