#!/usr/bin/env bash
# Figures for the closing notes, printed, never asserted: release binary sizes, memory after a
# sync of N containers, and the time from `docker run -d` returning to the service being in
# Consul. Starts its own private engine and Consul with tests/services.sh.
#
#   tests/bench.sh            (N=30 containers, 20 latency runs)
#   BENCH_N=10 BENCH_RUNS=5 tests/bench.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

target=x86_64-unknown-linux-musl
# The default build has TLS, whose `ring` compiles C: a musl build needs musl-gcc (musl-tools).
export CC_x86_64_unknown_linux_musl=musl-gcc
if rustup target list --installed 2>/dev/null | grep -qx "$target" && command -v musl-gcc >/dev/null; then
    cargo build -q --release --target "$target" --no-default-features --features consul
    cp "target/$target/release/registrator" target/registrator-consul-only
    cargo build -q --release --target "$target"
    bin="target/$target/release/registrator"
else
    echo "note: $target or musl-gcc not installed; measuring the glibc build" >&2
    cargo build -q --release --no-default-features --features consul
    cp target/release/registrator target/registrator-consul-only
    cargo build -q --release
    bin=target/release/registrator
fi

dir=$(mktemp -d /tmp/rgtr.XXXXXX)
trap 'bash tests/services.sh stop "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
bash tests/services.sh start "$dir" >/dev/null
# shellcheck disable=SC1091
source "$dir/env"

python3 tests/bench.py "$bin" target/registrator-consul-only
