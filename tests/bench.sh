#!/usr/bin/env bash
# The benchmark: what Pi users care about, printed as a table and one JSON line (figures only;
# the targets are shown beside them, never asserted by the test suite).
#
#   tests/bench.sh                    full mode: 100 containers, 60 s idle (about 6 minutes)
#   tests/bench.sh --short            CI's mode: 10 latency runs, burst of 20, 10 s idle
#   tests/bench.sh --peer 'CMD ARGS'  the same workload against another registrator-compatible
#                                     command too (run as CMD ARGS -ip 127.0.0.1 consul://ADDR),
#                                     side by side with ratios
#   tests/bench.sh --strict           full mode exits 1 when a target is missed
#   tests/bench.sh --scale            how cost grows with 100 to 1,000 containers running (by hand;
#                                     --counts N,N,... for other sizes)
#
# It builds the static x86_64 musl release binaries the way cross/build.sh builds every
# release (all features, the one measured; all without tls and consul only, for their sizes),
# starts the private engine and Consul of tests/services.sh in a temporary directory, and runs
# tests/bench/main.rs (`cargo bench --bench bench`), which says what each figure is.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=tests/lib.sh
TAG=bench
source tests/lib.sh

target=x86_64-unknown-linux-musl
mkdir -p target/bench
build() { # NAME FEATURES
    log "building $target ($2) with cross/build.sh"
    cp "$(cross/build.sh build "$target" "$2")" "target/bench/registrator-$1"
}
build default default
build all-no-tls consul,consulkv,etcd,skydns2,coredns,zookeeper,file,templates
build consul-only consul
log "building the benchmark"
cargo bench -q --bench bench --no-run 2>/dev/null || cargo bench --bench bench --no-run

# --scale runs up to 1,000 containers: the private bridge gets a /20 instead of its /24.
case " $* " in
*" --scale "* | *" --counts "*) export RGTR_BRIDGE_CIDR=${RGTR_BRIDGE_CIDR:-10.213.64.1/20} ;;
esac
dir=$(mktemp -d /tmp/rgtr-bench.XXXXXX)
cleanup() {
    # Daemons the benchmark spawned and did not stop (it exited early): they are its children
    # no more, so they are listed by PID.
    if [ -f "$dir/bench-daemons" ]; then
        xargs -r kill <"$dir/bench-daemons" 2>/dev/null || true
    fi
    bash tests/services.sh stop "$dir" >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT
bash tests/services.sh start "$dir" >&2
# shellcheck disable=SC1091
source "$dir/env"

cargo bench -q --bench bench -- \
    --bin target/bench/registrator-default \
    --size "all features (default, with tls)=target/bench/registrator-default" \
    --size "all features without tls=target/bench/registrator-all-no-tls" \
    --size "consul only=target/bench/registrator-consul-only" \
    "$@"
