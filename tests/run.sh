#!/usr/bin/env bash
# The whole test suite, as the README gives it: unit tests, the command-line tests, and the
# end-to-end tests of the release binary against a private Docker engine and the real registries
# that tests/services.sh starts on 127.0.0.1 (Consul on HTTP, HTTPS and a Unix socket; etcd
# plain and TLS; ZooKeeper) and stops again on exit, plus a second engine that serves only TLS
# on 127.0.0.1 (tests/docker28.sh start-tls: RGTR_TLS_DOCKER_*) and a third that is a
# single-node swarm manager on 127.0.0.1 (tests/docker28.sh start-swarm: SWARM_*). Needs root
# (dockerd).
#
#   tests/run.sh [extra cargo test arguments, e.g. a test name]
#
# RGTR_KEEP=1 keeps the services' directory (logs) after the run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --release --all-features

dir=$(mktemp -d /tmp/rgtr.XXXXXX)
cleanup() {
    bash tests/podman.sh stop "$dir" || true
    bash tests/docker28.sh stop "$dir" || true
    bash tests/docker28.sh stop-tls "$dir" || true
    bash tests/docker28.sh stop-swarm "$dir" || true
    if [ -s "$dir/figures.txt" ]; then
        echo "--- figures measured by the tests ---"
        cat "$dir/figures.txt"
    fi
    bash tests/services.sh stop "$dir" || true
    if [ "${RGTR_KEEP:-0}" = 1 ]; then
        echo "kept $dir" >&2
    else
        rm -rf "$dir"
    fi
}
trap cleanup EXIT
bash tests/services.sh start "$dir"
# shellcheck disable=SC1091
source "$dir/env"
# The engine of the TLS tests: Debian's dockerd 20.10 as a separate instance, TLS-only on
# 127.0.0.1 with a client certificate (RGTR_TLS_DOCKER_HOST, _CERTS, _BADCA, _NOCLIENT).
bash tests/docker28.sh start-tls "$dir"
# shellcheck disable=SC1091
source "$dir/docker-tls/env"
# The engine of the swarm tests (tests/swarm.rs): Docker 28.5 as a single-node swarm manager,
# its control, gossip and data ports on 127.0.0.1; the run fails if it cannot start.
bash tests/docker28.sh start-swarm "$dir"
# shellcheck disable=SC1091
source "$dir/swarm/env"

# One engine and one set of servers are shared, so the end-to-end tests run one at a time.
cargo test --release --all-features -- --test-threads=1 "$@"

# The core end-to-end scenarios again, against Podman's Docker-compatible socket (rootful,
# runc, cgroupfs, file events logger; tests/podman.sh). Left out, as Docker-only: restarting
# the engine (tests/services.sh's dockerd) and user-defined networks (Podman reports
# NetworkMode "bridge" for them, so their containers register like bridge ones).
if [ $# -eq 0 ]; then
    bash tests/podman.sh start "$dir"
    # shellcheck disable=SC1091
    source "$dir/podman/env"
    DOCKER_HOST=$PODMAN_HOST cargo test --release --all-features --test e2e -- --test-threads=1 \
        --skip engine_stopped_and_started_while_running \
        --skip user_defined_network_and_host_network

    # And against Docker 28.5 (Debian unstable's docker.io 28.5.2 and containerd 2.1.9,
    # fetched once into RGTR_CACHE; tests/docker28.sh), its socket under RGTR_TEST_DIR. Left
    # out: restarting the engine (the test restarts tests/services.sh's dockerd).
    bash tests/docker28.sh start "$dir"
    # shellcheck disable=SC1091
    source "$dir/docker28/env"
    DOCKER_HOST=$DOCKER28_HOST cargo test --release --all-features --test e2e -- --test-threads=1 \
        --skip engine_stopped_and_started_while_running
fi
