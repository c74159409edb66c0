#!/usr/bin/env bash
# Start/stop the real services used by the end-to-end tests:
#   * a PRIVATE Docker engine (its own containerd + dockerd, own bridge, own
#     socket, all state under DIR), never touching a system docker;
#   * test images built offline with `docker import` from busybox-static;
#   * a Consul dev agent listening on 127.0.0.1 only: plain HTTP on
#     CONSUL_PORT and on the unix socket DIR/consul.sock, HTTPS requiring a
#     client certificate on CONSUL_PORT+4;
#   * a throwaway test PKI in DIR/tls, made with openssl at every start;
#   * two etcd 3.4 servers (Debian etcd-server): plain HTTP with the v2 API
#     on ETCD_PORT, and TLS-only with client-certificate auth on ETCD_PORT+2;
#   * a standalone ZooKeeper 3.8 server (Debian zookeeper) on ZK_PORT.
#
# Usage:
#   tests/services.sh start DIR          start everything, write DIR/env
#   tests/services.sh stop DIR           stop everything, clean up (idempotent)
#   tests/services.sh stop-docker DIR    stop the engine (dockerd + containerd)
#   tests/services.sh start-docker DIR   start it again with the saved command
#   tests/services.sh restart-docker DIR stop-docker + start-docker
#   tests/services.sh stop-consul DIR    stop Consul
#   tests/services.sh start-consul DIR   start Consul again (dev mode: empty)
#   tests/services.sh restart-consul DIR stop-consul + start-consul
#   tests/services.sh stop-etcd DIR      stop the plain etcd (not the TLS one)
#   tests/services.sh start-etcd DIR     start it again (data dir kept)
#   tests/services.sh restart-etcd DIR   stop-etcd + start-etcd (data kept)
#   tests/services.sh wipe-etcd DIR      stop-etcd, delete its data, start-etcd
#   tests/services.sh stop-zk DIR        stop ZooKeeper
#   tests/services.sh start-zk DIR       start it again (data dir kept)
#   tests/services.sh restart-zk DIR     stop-zk + start-zk (data and sessions kept)
#
# DIR/env exports DOCKER_HOST, CONSUL_HTTP_ADDR, CONSUL_HTTPS_ADDR,
# RGTR_CONSUL_SOCK, RGTR_CONSUL_TOKEN, CONSUL_BIN, RGTR_TLS_DIR, ETCD_ADDR,
# ETCD_TLS_ADDR, ZK_ADDR and RGTR_TEST_DIR. RGTR_TLS_DIR holds ca.pem,
# server.pem, client.pem, other-ca.pem and their *-key.pem (see make_tls).
#
# Environment (all optional):
#   CONSUL_PORT          Consul HTTP port (default 18500); serf_lan, serf_wan
#                        and server RPC use CONSUL_PORT+1, +2, +3, HTTPS +4.
#   CONSUL_BIN           consul binary to use instead of the vendored .deb
#   ETCD_PORT            plain etcd client port (default 12379); its peer port
#                        is ETCD_PORT+1, the TLS etcd uses ETCD_PORT+2 (client)
#                        and ETCD_PORT+3 (peer).
#   ZK_PORT              ZooKeeper client port (default 12181)
#   RGTR_BRIDGE          bridge name (default rgtr0)
#   RGTR_BRIDGE_CIDR     bridge address (default 10.213.77.1/24)
#   RGTR_STORAGE_DRIVER  force a docker storage driver (default: overlay2 if
#                        an overlay mount works under DIR, else vfs)
#   RGTR_BUSYBOX         static busybox to build images from (default /bin/busybox)
#
# Network policy: the services listen on unix sockets or 127.0.0.1 only, this
# script publishes container ports only as 127.0.0.1:H and only ever talks to
# 127.0.0.1, and the engine is configured so that nothing it or its
# containers do can reach a non-loopback address by accident: no iptables
# NAT, no ip forwarding or masquerading, container DNS pointed at 127.0.0.1,
# registry pulls (and Consul HTTP checks to non-loopback targets) forced
# through a dead proxy on 127.0.0.1:9. etcd and ZooKeeper run with an empty
# environment (no proxy variables) and only know 127.0.0.1 peers.

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)

BRIDGE=${RGTR_BRIDGE:-rgtr0}
BRIDGE_CIDR=${RGTR_BRIDGE_CIDR:-10.213.77.1/24}
CONSUL_PORT=${CONSUL_PORT:-18500}
ETCD_PORT=${ETCD_PORT:-12379}
ZK_PORT=${ZK_PORT:-12181}
# A test-only secret of the throwaway dev agent (tests check it is never logged).
CONSUL_MASTER_TOKEN=rgtr-test-master-token-5c1d
BUSYBOX=${RGTR_BUSYBOX:-/bin/busybox}
# All containers of the private engine go below this cgroup, so that they
# can never be mixed up with a system docker's /docker/<id> cgroups.
CGROUP_PARENT=/rgtr-test

# Bounded waits, in tenths of a second.
PING_WAIT=300      # dockerd /_ping
LEADER_WAIT=300    # consul leader
STOP_WAIT=200      # a daemon to exit after SIGTERM
# Bounded waits, in seconds.
TLS_UP_WAIT=10     # consul HTTPS port and unix socket (after it has a leader)
ETCD_WAIT=30       # etcd healthy and serving v2 + v3 gateway
ZK_WAIT=60         # zookeeper answering ruok/srvr (a cold JVM on a busy box)

# ZooKeeper from Debian's zookeeper/libzookeeper-java: zookeeper.jar's
# manifest Class-Path brings its dependencies but no SLF4J binding (the
# Debian zkEnv.sh classpath has none either, so the server would log
# nothing); slf4j-log4j12 + log4j 1.2 are dependencies of libzookeeper-java.
ZK_MAIN=org.apache.zookeeper.server.quorum.QuorumPeerMain
ZK_JARS=(/usr/share/java/zookeeper.jar /usr/share/java/slf4j-log4j12.jar /usr/share/java/log4j-1.2.jar)

# The docker CLI must talk to the private engine only, whatever the caller's
# environment says.
unset DOCKER_CONTEXT DOCKER_TLS_VERIFY DOCKER_CERT_PATH DOCKER_HOST

TAG=services.sh
# shellcheck source=tests/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    sed -n 's/^#   \(tests\/services\.sh .*\)/  \1/p' "${BASH_SOURCE[0]}" >&2
    exit 2
}

# ---------------------------------------------------------------- paths --

# set_paths DIR [create]: make DIR absolute and derive every other path.
set_paths() {
    local dir=$1 create=${2:-}
    [ -n "$dir" ] || usage
    if [ -n "$create" ]; then
        mkdir -p "$dir"
    fi
    if [ -d "$dir" ]; then
        DIR=$(cd "$dir" && pwd -P)
    else
        DIR=$dir
    fi
    DOCKER_DIR=$DIR/docker
    SOCK=$DIR/docker.sock
    DOCKERD_PIDFILE=$DOCKER_DIR/docker.pid
    DOCKERD_LOG=$DOCKER_DIR/dockerd.log
    DOCKERD_CMD=$DOCKER_DIR/cmd
    CTRD_DIR=$DIR/containerd
    CTRD_SOCK=$CTRD_DIR/containerd.sock
    CTRD_PIDFILE=$CTRD_DIR/containerd.pid
    CTRD_LOG=$CTRD_DIR/containerd.log
    CTRD_CMD=$CTRD_DIR/cmd
    CONSUL_LOG=$DIR/consul.log
    CONSUL_PIDFILE=$DIR/consul.pid
    CONSUL_CMD=$DIR/consul.cmd
    CONSUL_SOCK=$DIR/consul.sock
    TLS_DIR=$DIR/tls
    ETCD_DATA=$DIR/etcd
    ETCD_LOG=$DIR/etcd.log
    ETCD_PIDFILE=$DIR/etcd.pid
    ETCD_CMD=$DIR/etcd.cmd
    ETCD_TLS_DATA=$DIR/etcd-tls
    ETCD_TLS_LOG=$DIR/etcd-tls.log
    ETCD_TLS_PIDFILE=$DIR/etcd-tls.pid
    ETCD_TLS_CMD=$DIR/etcd-tls.cmd
    ZK_DIR=$DIR/zk
    ZK_LOG=$DIR/zk.log
    ZK_PIDFILE=$DIR/zk.pid
    ZK_CMD=$DIR/zk.cmd
    BRIDGE_FILE=$DOCKER_DIR/bridge
}

# --------------------------------------------------------------- helpers --
# (log, die, need_cmd, log_tail, pid_alive, pidfile_pid, stop_pid, curl_local and
# make_rootfs are in tests/lib.sh, shared with tests/podman.sh.)

# run_bg LOG CMDFILE: start the command saved (shell-quoted) in CMDFILE as a
# daemon in its own session, so it neither holds the caller's stdio pipes
# open nor gets the caller's terminal signals. Prints its pid. Because this
# script has no job control, a background child is never a process-group
# leader, so setsid(1) calls setsid(2) in place and $! is the daemon's pid.
run_bg() {
    local logf=$1 cmdfile=$2 cmd
    eval "cmd=($(cat "$cmdfile"))"
    setsid "${cmd[@]}" </dev/null >>"$logf" 2>&1 &
    printf '%s\n' "$!"
}

# save_cmd FILE ARGV...: write ARGV shell-quoted on one line.
save_cmd() {
    local f=$1
    shift
    printf '%q ' "$@" >"$f"
    printf '\n' >>"$f"
}

# port_in_use PORT: true if anything listens on TCP or UDP PORT.
port_in_use() {
    ss -Htuln "( sport = :$1 )" 2>/dev/null | grep -q .
}

# curl that never uses a proxy from the caller's environment (a proxy could
# be a non-loopback address).

# ports_free WHAT PORT...: die if any PORT is already listened on.
ports_free() {
    local what=$1 p
    shift
    for p in "$@"; do
        port_in_use "$p" &&
            die "port $p is already in use ($what); stop whatever listens there or choose other ports"
    done
    return 0
}

# launch NAME CMDFILE PIDFILE LOG PORT...: unless NAME is already running
# or one of its PORTs is taken, start the command saved in CMDFILE with
# run_bg and record its pid in PIDFILE and in LAUNCHED_PID.
launch() {
    local name=$1 cmdfile=$2 pidfile=$3 logf=$4 pid
    shift 4
    [ -s "$cmdfile" ] || die "no saved $name command in $DIR (run '$0 start $DIR' first)"
    if pid=$(pidfile_pid "$pidfile"); then
        die "$name already running (pid $pid) for $DIR"
    fi
    ports_free "needed by $name" "$@"
    log "starting $name (command line: $cmdfile)"
    LAUNCHED_PID=$(run_bg "$logf" "$cmdfile")
    printf '%s\n' "$LAUNCHED_PID" >"$pidfile"
}

# wait_until NAME PID LOG SECONDS CHECK...: run CHECK every 0.1 s until it
# succeeds while PID is alive; die with the tail of LOG if PID exits or
# SECONDS pass first.
wait_until() {
    local name=$1 pid=$2 logf=$3 secs=$4 deadline=$((SECONDS + $4))
    shift 4
    while :; do
        if "$@" && pid_alive "$pid"; then
            return 0
        fi
        if ! pid_alive "$pid"; then
            log_tail "$logf"
            die "$name (pid $pid) exited during startup (log: $logf)"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            log_tail "$logf"
            die "$name (pid $pid) did not come up within ${secs}s: '$*' kept failing (log: $logf)"
        fi
        sleep 0.1
    done
}

# docker CLI bound to the private engine.
dk() { docker -H "unix://$SOCK" "$@"; }

docker_ping() {
    [ -S "$SOCK" ] &&
        [ "$(curl_local --max-time 3 --unix-socket "$SOCK" http://localhost/_ping 2>/dev/null)" = OK ]
}

# --------------------------------------------------- engine: preparation --

check_engine_prereqs() {
    [ "$(id -u)" = 0 ] || die "must run as root (dockerd, bridges, mounts)"
    need_cmd dockerd "Debian package docker.io"
    need_cmd containerd "Debian package containerd"
    need_cmd containerd-shim-runc-v2 "Debian package containerd"
    need_cmd runc "Debian package runc"
    need_cmd docker "docker CLI, Debian package docker.io"
    need_cmd ip "Debian package iproute2"
    need_cmd ss "Debian package iproute2"
    need_cmd curl "Debian package curl"
    need_cmd tar
    need_cmd setsid "Debian package util-linux"
    need_cmd mount
    need_cmd umount
    DOCKER_PROXY=$(command -v docker-proxy 2>/dev/null ||
        { [ -x /usr/sbin/docker-proxy ] && echo /usr/sbin/docker-proxy; } ||
        { [ -x /usr/libexec/docker/docker-proxy ] && echo /usr/libexec/docker/docker-proxy; } ||
        true)
    [ -n "$DOCKER_PROXY" ] ||
        die "docker-proxy (userland proxy) not found (Debian package docker.io)"
    # A static init (tini) run as PID 1 of every container (dockerd --init).
    # Our images' CMD is busybox `sleep`, which as PID 1 ignores SIGTERM, so
    # without an init every `docker stop` and every engine shutdown would wait
    # the full 10 s stop timeout per container before SIGKILL.
    DOCKER_INIT=$(command -v docker-init 2>/dev/null ||
        { [ -x /usr/libexec/docker/docker-init ] && echo /usr/libexec/docker/docker-init; } ||
        true)
    [ -n "$DOCKER_INIT" ] ||
        die "docker-init not found (Debian: package tini, /usr/bin/docker-init -> tini-static)"
    # Unix socket paths are limited to 108 bytes; the longest one we create
    # is containerd's ttrpc socket, and libnetwork/containerd add their own
    # below the exec root, so keep DIR reasonably short.
    [ "${#DIR}" -le 60 ] ||
        die "DIR '$DIR' is ${#DIR} characters long; use a path of at most 60 (e.g. mktemp -d)"
}

# Choose the storage driver: overlay2 if an overlay mount actually works on
# the filesystem holding DIR (the kernel may lack overlayfs, or DIR may be
# on a filesystem overlay cannot use as upper dir), else vfs (always works,
# just copies layers; our busybox images are ~2 MB so that is cheap).
pick_storage_driver() {
    if [ -n "${RGTR_STORAGE_DRIVER:-}" ]; then
        printf '%s\n' "$RGTR_STORAGE_DRIVER"
        return
    fi
    if overlay_works "$DOCKER_DIR/overlay-probe"; then
        printf '%s\n' overlay2
    else
        printf '%s\n' vfs
    fi
}

# Create the engine's own bridge (dockerd --bridge uses an existing one and
# takes its subnet from the bridge's address).
setup_bridge() {
    if ip link show "$BRIDGE" >/dev/null 2>&1; then
        # A leftover is fine to reuse; one with attached veths belongs to
        # another running engine and must not be shared.
        if [ -n "$(ip -o link show master "$BRIDGE" 2>/dev/null)" ]; then
            die "bridge $BRIDGE exists and has interfaces attached (another engine running?); stop it or set RGTR_BRIDGE/RGTR_BRIDGE_CIDR"
        fi
        log "reusing existing bridge $BRIDGE"
    else
        ip link add "$BRIDGE" type bridge ||
            die "cannot create bridge $BRIDGE (kernel without bridge support?)"
    fi
    printf '%s\n' "$BRIDGE" >"$BRIDGE_FILE"
    printf '%s\n' "$BRIDGE_CIDR" >"$DOCKER_DIR/bridge-cidr"
    ip addr flush dev "$BRIDGE"
    ip addr add "$BRIDGE_CIDR" dev "$BRIDGE"
    ip link set "$BRIDGE" up
}

# Write the containerd config and both command lines (DIR/containerd/cmd,
# DIR/docker/cmd) that start-docker reuses verbatim.
write_engine_config() {
    local driver=$1
    mkdir -p "$CTRD_DIR" "$DOCKER_DIR/data" "$DOCKER_DIR/exec"

    # Our own containerd instead of dockerd's "managed" one: dockerd 20.10
    # silently attaches to a SYSTEM containerd whenever
    # /run/containerd/containerd.sock exists (typical on CI hosts), which
    # would mix our containers into the system's state. Config modelled on
    # the one dockerd writes for its managed containerd.
    cat >"$CTRD_DIR/config.toml" <<EOF
version = 2
root = "$CTRD_DIR/root"
state = "$CTRD_DIR/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "$CTRD_SOCK"
[debug]
  address = ""
[metrics]
  address = ""
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$CTRD_DIR/opt"
EOF
    save_cmd "$CTRD_CMD" "$(command -v containerd)" --config "$CTRD_DIR/config.toml"
    # containerd 1.6 always puts shim sockets in /run/containerd/s, whatever
    # its state dir; remember whether that directory is ours to remove.
    if [ ! -e /run/containerd ]; then
        touch "$CTRD_DIR/created-run-containerd"
    fi

    # Our own (empty) daemon config, so a host /etc/docker/daemon.json (hosts,
    # mirrors, storage driver, ...) can never leak in or conflict with flags.
    printf '{}\n' >"$DOCKER_DIR/daemon.json"

    # dockerd has no proxy setting in daemon.json before 23.0; the proxy
    # variables below point at a closed 127.0.0.1 port so that an accidental
    # `docker pull` (e.g. a test using an image we did not import) fails fast
    # instead of going to a registry. Lower- and upper-case are both set
    # because Go falls back to the lower-case name when the upper one is empty.
    local dead_proxy=http://127.0.0.1:9
    save_cmd "$DOCKERD_CMD" env \
        HTTP_PROXY=$dead_proxy http_proxy=$dead_proxy \
        HTTPS_PROXY=$dead_proxy https_proxy=$dead_proxy \
        NO_PROXY=localhost no_proxy=localhost \
        "$(command -v dockerd)" \
        --config-file "$DOCKER_DIR/daemon.json" \
        --data-root "$DOCKER_DIR/data" \
        --exec-root "$DOCKER_DIR/exec" \
        --pidfile "$DOCKERD_PIDFILE" \
        -H "unix://$SOCK" \
        --containerd "$CTRD_SOCK" \
        --storage-driver "$driver" \
        --exec-opt native.cgroupdriver=cgroupfs \
        --cgroup-parent "$CGROUP_PARENT" \
        --bridge "$BRIDGE" \
        --iptables=false \
        --ip-forward=false \
        --ip-masq=false \
        --userland-proxy=true \
        --userland-proxy-path "$DOCKER_PROXY" \
        --dns 127.0.0.1 \
        --init \
        --init-path "$DOCKER_INIT" \
        --live-restore=false \
        --shutdown-timeout 2
}

# ------------------------------------------------------ engine: run/stop --

start_engine() {
    local pid i
    if [ ! -s "$DOCKERD_CMD" ] || [ ! -s "$CTRD_CMD" ]; then
        die "no saved engine command in $DIR (run '$0 start $DIR' first)"
    fi
    if pid=$(pidfile_pid "$DOCKERD_PIDFILE"); then
        die "dockerd already running (pid $pid) for $DIR"
    fi
    ip link show "$(cat "$BRIDGE_FILE")" >/dev/null 2>&1 ||
        die "bridge $(cat "$BRIDGE_FILE") is gone; run '$0 stop $DIR' and '$0 start $DIR'"

    # containerd (may still be running if only dockerd was stopped by hand).
    if ! pidfile_pid "$CTRD_PIDFILE" >/dev/null; then
        rm -f "$CTRD_SOCK"
        pid=$(run_bg "$CTRD_LOG" "$CTRD_CMD")
        printf '%s\n' "$pid" >"$CTRD_PIDFILE"
        for ((i = 0; i < 100; i++)); do
            [ -S "$CTRD_SOCK" ] && break
            pid_alive "$pid" || break
            sleep 0.1
        done
        if ! [ -S "$CTRD_SOCK" ] || ! pid_alive "$pid"; then
            log_tail "$CTRD_LOG"
            die "containerd did not start (log: $CTRD_LOG)"
        fi
    fi

    log "starting dockerd (command line: $DOCKERD_CMD)"
    pid=$(run_bg "$DOCKERD_LOG" "$DOCKERD_CMD")
    for ((i = 0; i < PING_WAIT; i++)); do
        docker_ping && break
        if ! pid_alive "$pid"; then
            log_tail "$DOCKERD_LOG"
            die "dockerd exited during startup (log: $DOCKERD_LOG)"
        fi
        sleep 0.1
    done
    if ! docker_ping; then
        log_tail "$DOCKERD_LOG"
        die "dockerd did not answer /_ping on $SOCK within $((PING_WAIT / 10))s (log: $DOCKERD_LOG)"
    fi
    log "dockerd is up (pid $pid)"
}

# Kill service processes that still refer to DIR (e.g. containerd shims
# after a SIGKILLed containerd, a daemon whose pidfile was lost). Only our
# own binaries are considered, never the caller, whose command line may
# contain DIR too; a java process only if it is the ZooKeeper server run
# with this DIR's zoo.cfg, so no unrelated JVM is ever touched.
kill_leftovers() {
    local p exe cmdline
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        [ "$p" != $$ ] || continue
        exe=$(readlink "/proc/$p/exe" 2>/dev/null) || continue
        case ${exe##*/} in
            containerd | containerd-shim* | dockerd | docker-proxy | consul | etcd | java) ;;
            *) continue ;;
        esac
        cmdline=$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null) || continue
        if [ "${exe##*/}" = java ]; then
            case $cmdline in
                *" $ZK_MAIN $ZK_DIR/zoo.cfg "*) ;;
                *) continue ;;
            esac
        fi
        case $cmdline in
            *"$DIR/"*) stop_pid "leftover ${exe##*/}" "$p" ;;
        esac
    done
}

# After a crash of dockerd/containerd (SIGKILL, OOM) container processes,
# their shims and docker-proxy processes outlive the engine. Remove them:
# runc still knows our containers through its state dir below DIR, and the
# orphaned proxies are recognised by forwarding into our bridge's subnet.
kill_orphaned_containers() {
    local rroot=$DOCKER_DIR/exec/runtime-runc/moby id
    if [ -d "$rroot" ] && command -v runc >/dev/null 2>&1; then
        for id in $(runc --root "$rroot" list -q 2>/dev/null); do
            log "deleting orphaned container $id"
            runc --root "$rroot" delete --force "$id" >/dev/null 2>&1 ||
                log "WARNING: runc could not delete $id"
        done
    fi
    [ -s "$BRIDGE_FILE" ] && [ -s "$DOCKER_DIR/bridge-cidr" ] || return 0
    kill_orphaned_proxies "$(cat "$DOCKER_DIR/bridge-cidr")"
}

# kill_orphaned_proxies CIDR: docker-proxy processes a SIGKILLed dockerd left behind (children
# of init now) that forward into CIDR.
kill_orphaned_proxies() {
    local cidr=$1 p exe args ip
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        exe=$(readlink "/proc/$p/exe" 2>/dev/null) || continue
        [ "${exe##*/}" = docker-proxy ] || continue
        # Only orphans: a live engine's proxies are children of its dockerd.
        [ "$(awk '/^PPid:/ {print $2}' "/proc/$p/status" 2>/dev/null)" = 1 ] || continue
        args=$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null) || continue
        ip=$(printf '%s\n' "$args" | sed -n 's/.*-container-ip \([0-9.]*\).*/\1/p')
        if [ -n "$ip" ] && ip_in_cidr "$ip" "$cidr"; then
            stop_pid "orphaned docker-proxy" "$p"
        fi
    done
}

ip_to_int() {
    local IFS=. a b c d
    read -r a b c d <<<"$1"
    printf '%s\n' $(((a << 24) | (b << 16) | (c << 8) | d))
}

# ip_in_cidr IP A.B.C.D/N
ip_in_cidr() {
    local net=${2%/*} bits=${2#*/} mask
    mask=$(((0xffffffff << (32 - bits)) & 0xffffffff))
    [ $(($(ip_to_int "$1") & mask)) -eq $(($(ip_to_int "$net") & mask)) ]
}

stop_engine() {
    local pid proxies="" c
    if pid=$(pidfile_pid "$DOCKERD_PIDFILE"); then
        # docker-proxy children do not mention DIR; remember them in case
        # dockerd has to be SIGKILLed and leaves them behind.
        proxies=$(ps -o pid= --ppid "$pid" 2>/dev/null || true)
        stop_pid dockerd "$pid"
        for c in $proxies; do
            case $(readlink "/proc/$c/exe" 2>/dev/null) in
                */docker-proxy) stop_pid docker-proxy "$c" ;;
            esac
        done
    fi
    if pid=$(pidfile_pid "$CTRD_PIDFILE"); then
        stop_pid containerd "$pid"
    fi
    rm -f "$DOCKERD_PIDFILE" "$CTRD_PIDFILE"
}

# ------------------------------------------------------------- images --

check_busybox() {
    if [ ! -f "$BUSYBOX" ] || [ ! -x "$BUSYBOX" ]; then
        die "busybox not found at $BUSYBOX (install Debian package busybox-static)"
    fi
    # The images contain nothing but this binary, so it must be static
    # (ldd fails on static executables).
    if command -v ldd >/dev/null 2>&1 && ldd "$BUSYBOX" >/dev/null 2>&1; then
        die "$BUSYBOX is dynamically linked; the images need a static one (Debian package busybox-static)"
    fi
}

# Build bb, redis and nginx images from one busybox rootfs with
# `docker import` (nothing is ever pulled).
build_images() {
    local tarball
    mkdir -p "$DIR/images"
    tarball=$(make_rootfs "$DIR/images" "$BUSYBOX")

    local cmd='CMD ["sleep","1000000"]'
    dk import --change "$cmd" "$tarball" bb:latest >/dev/null
    dk import --change "$cmd" --change 'EXPOSE 6379' "$tarball" redis:latest >/dev/null
    dk import --change "$cmd" --change 'EXPOSE 80 443' "$tarball" nginx:latest >/dev/null
    log "imported images: bb:latest redis:latest nginx:latest"
}

# The published-port path Consul HTTP checks will use: container httpd ->
# docker-proxy on 127.0.0.1:H -> curl to 127.0.0.1:H. Nothing else is
# contacted.
verify_published_port() {
    local cid hostport body="" i
    cid=$(dk run -d -p 127.0.0.1::80 bb httpd -f -p 80 -h /tmp)
    hostport=$(dk port "$cid" 80/tcp | grep -m1 '^127\.0\.0\.1:' || true)
    if [ -z "$hostport" ]; then
        dk rm -f "$cid" >/dev/null 2>&1 || true
        log_tail "$DOCKERD_LOG"
        die "published port of the test container is not bound on 127.0.0.1"
    fi
    for ((i = 0; i < 100; i++)); do
        body=$(curl_local -f --max-time 2 "http://$hostport/" 2>/dev/null) && break
        sleep 0.1
    done
    dk rm -f "$cid" >/dev/null
    if [ "$body" != ok ]; then
        log_tail "$DOCKERD_LOG"
        die "could not fetch http://$hostport/ from a container published on 127.0.0.1"
    fi
    log "published port check ok (http://$hostport/)"
}

# --------------------------------------------------------------- consul --

# Locate the vendored consul .deb: ../shared/vendor next to the repository
# root (the repository being the parent of this script's directory, or git's
# idea of the top level).
find_consul_deb() {
    local top cands=() d
    cands+=("$SCRIPT_DIR/../../shared/vendor")
    if top=$(git -C "$SCRIPT_DIR" rev-parse --show-toplevel 2>/dev/null); then
        cands+=("$top/../shared/vendor")
    fi
    for d in "${cands[@]}"; do
        # Newest version if several.
        local deb
        deb=$(find "$d/" -maxdepth 1 -name 'consul_*.deb' 2>/dev/null | sort -V | tail -n 1 || true)
        if [ -n "$deb" ]; then
            printf '%s\n' "$(cd "$(dirname "$deb")" && pwd -P)/$(basename "$deb")"
            return 0
        fi
    done
    return 1
}

resolve_consul_bin() {
    local want=${CONSUL_BIN:-}
    # A CONSUL_BIN exported by an earlier run's DIR/env points into that
    # run's DIR/consul-root; once that DIR is gone, unpack the .deb again
    # rather than fail.
    case $want in
        */consul-root/usr/bin/consul)
            if [ ! -x "$want" ]; then
                log "CONSUL_BIN=$want no longer exists (stale DIR/env?); using the vendored .deb"
                want=
            fi
            ;;
    esac
    if [ -n "$want" ]; then
        CONSUL=$(command -v "$want" 2>/dev/null || true)
        if [ -z "$CONSUL" ] || [ ! -f "$CONSUL" ] || [ ! -x "$CONSUL" ]; then
            die "CONSUL_BIN=$want is not an executable file"
        fi
    else
        need_cmd dpkg-deb "needed to unpack the vendored consul .deb"
        local deb
        deb=$(find_consul_deb) ||
            die "consul .deb not found in $SCRIPT_DIR/../../shared/vendor (expected ../shared/vendor/consul_*.deb next to the repository); set CONSUL_BIN to use another binary"
        rm -rf "$DIR/consul-root"
        dpkg-deb -x "$deb" "$DIR/consul-root" || die "cannot unpack $deb"
        CONSUL=$DIR/consul-root/usr/bin/consul
        [ -x "$CONSUL" ] || die "$deb does not contain usr/bin/consul"
    fi
    CONSUL=$(cd "$(dirname "$CONSUL")" && pwd -P)/$(basename "$CONSUL")
    "$CONSUL" version >/dev/null 2>&1 || die "$CONSUL does not run ('$CONSUL version' failed)"
}

write_consul_cmd() {
    local p
    ports_free "Consul uses CONSUL_PORT=$CONSUL_PORT .. +4; set CONSUL_PORT" \
        "$CONSUL_PORT" $((CONSUL_PORT + 1)) $((CONSUL_PORT + 2)) $((CONSUL_PORT + 3)) $((CONSUL_PORT + 4))
    # ACLs are on with an allow-all default, so requests without a token work and a token the
    # agent does not know is refused (403): that shows a client really sends its token.
    # -dev keeps all state in memory. DNS and gRPC are disabled, the other
    # ports moved next to the HTTP port so a system consul on the default
    # ports is never disturbed. Update checks / anonymous signatures would
    # contact checkpoint-api.hashicorp.com: disabled. Consul HTTP checks honour
    # proxy variables except for loopback targets, so the dead 127.0.0.1
    # proxy makes an HTTP check against anything but 127.0.0.1 (e.g. a
    # container IP) fail instead of sending traffic there.
    # The HTTP API is served on 127.0.0.1:CONSUL_PORT and on the unix socket
    # DIR/consul.sock (addresses.http takes a space-separated list), and over
    # HTTPS on 127.0.0.1:CONSUL_PORT+4 (addresses.https defaults to the
    # -client address) with the test server certificate; verify_incoming_https
    # makes HTTPS clients present a certificate signed by DIR/tls/ca.pem.
    # RPC stays plain (no verify_incoming_rpc/verify_outgoing).
    local dead_proxy=http://127.0.0.1:9
    save_cmd "$CONSUL_CMD" env CHECKPOINT_DISABLE=1 \
        HTTP_PROXY=$dead_proxy http_proxy=$dead_proxy \
        HTTPS_PROXY=$dead_proxy https_proxy=$dead_proxy \
        NO_PROXY=localhost no_proxy=localhost \
        "$CONSUL" agent -dev \
        -node rgtr-test \
        -bind 127.0.0.1 -client 127.0.0.1 \
        -enable-script-checks \
        -http-port "$CONSUL_PORT" \
        -dns-port -1 \
        -hcl "ports { serf_lan = $((CONSUL_PORT + 1)) serf_wan = $((CONSUL_PORT + 2)) server = $((CONSUL_PORT + 3)) https = $((CONSUL_PORT + 4)) grpc = -1 }" \
        -hcl "addresses { http = \"127.0.0.1 unix://$CONSUL_SOCK\" }" \
        -hcl "cert_file = \"$TLS_DIR/server.pem\" key_file = \"$TLS_DIR/server-key.pem\" ca_file = \"$TLS_DIR/ca.pem\"" \
        -hcl 'verify_incoming_https = true' \
        -hcl 'disable_update_check = true' \
        -hcl 'disable_anonymous_signature = true' \
        -hcl "acl { enabled = true default_policy = \"allow\" tokens { master = \"$CONSUL_MASTER_TOKEN\" } }" \
        -pid-file "$CONSUL_PIDFILE"
    printf '%s\n' "$CONSUL_PORT" >"$DIR/consul.port"
}

start_consul() {
    [ -s "$CONSUL_CMD" ] || die "no saved consul command in $DIR (run '$0 start $DIR' first)"
    local pid port i leader="" f
    if pid=$(pidfile_pid "$CONSUL_PIDFILE"); then
        die "consul already running (pid $pid) for $DIR"
    fi
    port=$(cat "$DIR/consul.port")
    for f in ca.pem server.pem server-key.pem client.pem client-key.pem; do
        [ -s "$TLS_DIR/$f" ] || die "$TLS_DIR/$f is missing (run '$0 start $DIR' first)"
    done
    rm -f "$CONSUL_PIDFILE" "$CONSUL_SOCK"
    pid=$(run_bg "$CONSUL_LOG" "$CONSUL_CMD")
    # consul writes the same pid itself (-pid-file) once it is up; write it
    # now so a failing start can still be cleaned up.
    printf '%s\n' "$pid" >"$CONSUL_PIDFILE"
    for ((i = 0; i < LEADER_WAIT; i++)); do
        leader=$(curl_local --max-time 2 "http://127.0.0.1:$port/v1/status/leader" 2>/dev/null || true)
        [ -n "$leader" ] && [ "$leader" != '""' ] && break
        if ! pid_alive "$pid"; then
            log_tail "$CONSUL_LOG"
            die "consul exited during startup (log: $CONSUL_LOG)"
        fi
        sleep 0.1
    done
    if [ -z "$leader" ] || [ "$leader" = '""' ]; then
        log_tail "$CONSUL_LOG"
        die "consul has no leader on 127.0.0.1:$port after $((LEADER_WAIT / 10))s (log: $CONSUL_LOG)"
    fi
    wait_until "consul HTTPS on 127.0.0.1:$((port + 4))" "$pid" "$CONSUL_LOG" "$TLS_UP_WAIT" \
        consul_https_ok $((port + 4))
    wait_until "consul on unix socket $CONSUL_SOCK" "$pid" "$CONSUL_LOG" "$TLS_UP_WAIT" \
        consul_sock_ok
    log "consul is up on 127.0.0.1:$port, https://127.0.0.1:$((port + 4)) and $CONSUL_SOCK (pid $pid, leader $leader)"
}

# A leader address ("127.0.0.1:PORT") from /v1/status/leader means the API
# answers and the agent is usable.
is_leader_answer() { [ -n "$1" ] && [ "$1" != '""' ]; }

consul_https_ok() {
    local out
    out=$(curl_local -f --max-time 2 --cacert "$TLS_DIR/ca.pem" \
        --cert "$TLS_DIR/client.pem" --key "$TLS_DIR/client-key.pem" \
        "https://127.0.0.1:$1/v1/status/leader" 2>/dev/null) && is_leader_answer "$out"
}

consul_sock_ok() {
    local out
    [ -S "$CONSUL_SOCK" ] &&
        out=$(curl_local -f --max-time 2 --unix-socket "$CONSUL_SOCK" \
            http://localhost/v1/status/leader 2>/dev/null) && is_leader_answer "$out"
}

stop_consul() {
    local pid
    if pid=$(pidfile_pid "$CONSUL_PIDFILE"); then
        stop_pid consul "$pid"
    fi
    rm -f "$CONSUL_PIDFILE" "$CONSUL_SOCK"
}

# ------------------------------------------------ etcd/zookeeper/tls: prereqs --

check_extra_prereqs() {
    need_cmd openssl "Debian package openssl"
    need_cmd timeout "Debian package coreutils"
    ETCD=$(command -v etcd 2>/dev/null || true)
    [ -n "$ETCD" ] || die "etcd not found (Debian package etcd-server)"
    "$ETCD" --version >/dev/null 2>&1 || die "$ETCD does not run ('$ETCD --version' failed)"
    JAVA=$(command -v java 2>/dev/null || true)
    [ -n "$JAVA" ] || die "java not found (Debian package zookeeper brings default-jre)"
    "$JAVA" -version >/dev/null 2>&1 || die "$JAVA does not run ('$JAVA -version' failed)"
    local j
    for j in "${ZK_JARS[@]}"; do
        [ -f "$j" ] || die "$j not found (Debian package zookeeper / libzookeeper-java)"
    done
}

# ------------------------------------------------------------------ tls --

# ossl ARGS...: openssl with its chatter in DIR/tls/openssl.log; die on error.
ossl() {
    openssl "$@" >>"$TLS_DIR/openssl.log" 2>&1 || {
        log_tail "$TLS_DIR/openssl.log"
        die "openssl $1 failed (log: $TLS_DIR/openssl.log)"
    }
}

# tls_cert NAME CN ISSUER EXT...: NAME-key.pem (new EC P-256 key) and
# NAME.pem with the extension lines EXT, signed by ISSUER ("self" for a
# self-signed CA, else the name of a CA made before).
tls_cert() {
    local d=$TLS_DIR name=$1 cn=$2 issuer=$3 serial
    shift 3
    ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/$name-key.pem"
    ossl req -new -key "$d/$name-key.pem" -subj "/O=rgtr test/CN=$cn" -out "$d/$name.csr"
    printf '%s\n' "$@" >"$d/$name.ext"
    serial=0x$(openssl rand -hex 12) || die "openssl rand failed"
    if [ "$issuer" = self ]; then
        ossl x509 -req -in "$d/$name.csr" -signkey "$d/$name-key.pem" \
            -days 3650 -sha256 -set_serial "$serial" -extfile "$d/$name.ext" -out "$d/$name.pem"
    else
        ossl x509 -req -in "$d/$name.csr" -CA "$d/$issuer.pem" -CAkey "$d/$issuer-key.pem" \
            -days 3650 -sha256 -set_serial "$serial" -extfile "$d/$name.ext" -out "$d/$name.pem"
    fi
    rm -f "$d/$name.csr" "$d/$name.ext"
}

# make_tls: a fresh throwaway PKI in DIR/tls:
#   ca.pem, ca-key.pem              the test CA
#   server.pem, server-key.pem      signed by ca; SAN DNS:localhost, IP:127.0.0.1;
#                                   serverAuth AND clientAuth, because Consul
#                                   and etcd's gRPC gateway also use the server
#                                   certificate as a client certificate
#   client.pem, client-key.pem      signed by ca; clientAuth
#   other-ca.pem, other-ca-key.pem  an unrelated CA that signs nothing (for
#                                   "refuses a server it cannot verify" tests)
# All keys are EC P-256 in PKCS#8 PEM ("-----BEGIN PRIVATE KEY-----", what
# `openssl genpkey` writes), not SEC1 ("BEGIN EC PRIVATE KEY"); openssl
# creates them with mode 0600 (the tests run as root).
make_tls() {
    rm -rf "$TLS_DIR"
    mkdir -p "$TLS_DIR"
    local ca=(
        'basicConstraints = critical, CA:TRUE'
        'keyUsage = critical, keyCertSign, cRLSign, digitalSignature'
        'subjectKeyIdentifier = hash'
    )
    local leaf=(
        'basicConstraints = critical, CA:FALSE'
        'keyUsage = critical, digitalSignature'
        'subjectKeyIdentifier = hash'
        'authorityKeyIdentifier = keyid'
    )
    tls_cert ca "rgtr test CA" self "${ca[@]}"
    tls_cert other-ca "rgtr other test CA" self "${ca[@]}"
    tls_cert server localhost ca "${leaf[@]}" \
        'extendedKeyUsage = serverAuth, clientAuth' \
        'subjectAltName = DNS:localhost, IP:127.0.0.1'
    tls_cert client rgtr-test-client ca "${leaf[@]}" \
        'extendedKeyUsage = clientAuth'
    ossl verify -CAfile "$TLS_DIR/ca.pem" -purpose sslserver "$TLS_DIR/server.pem"
    ossl verify -CAfile "$TLS_DIR/ca.pem" -purpose sslclient "$TLS_DIR/server.pem" "$TLS_DIR/client.pem"
    if openssl verify -CAfile "$TLS_DIR/other-ca.pem" "$TLS_DIR/server.pem" >/dev/null 2>&1; then
        die "$TLS_DIR/other-ca.pem unexpectedly verifies server.pem"
    fi
    log "test PKI written to $TLS_DIR"
}

# ----------------------------------------------------------------- etcd --

# Both etcd servers run with an empty environment (env -i): no proxy
# variables, and no ETCD_* variable of the caller (etcd reads every ETCD_*
# variable as a flag, and DIR/env itself exports ETCD_ADDR).
write_etcd_cmds() {
    local p=$ETCD_PORT
    ports_free "etcd uses ETCD_PORT=$p .. +3; set ETCD_PORT" "$p" $((p + 1)) $((p + 2)) $((p + 3))
    save_cmd "$ETCD_CMD" env -i "$ETCD" \
        --name rgtr-test \
        --data-dir "$ETCD_DATA" \
        --enable-v2 \
        --listen-client-urls "http://127.0.0.1:$p" \
        --advertise-client-urls "http://127.0.0.1:$p" \
        --listen-peer-urls "http://127.0.0.1:$((p + 1))" \
        --initial-advertise-peer-urls "http://127.0.0.1:$((p + 1))" \
        --initial-cluster "rgtr-test=http://127.0.0.1:$((p + 1))" \
        --initial-cluster-token rgtr-test \
        --initial-cluster-state new \
        --logger zap --log-outputs stderr
    save_cmd "$ETCD_TLS_CMD" env -i "$ETCD" \
        --name rgtr-tls \
        --data-dir "$ETCD_TLS_DATA" \
        --enable-v2 \
        --listen-client-urls "https://127.0.0.1:$((p + 2))" \
        --advertise-client-urls "https://127.0.0.1:$((p + 2))" \
        --cert-file "$TLS_DIR/server.pem" \
        --key-file "$TLS_DIR/server-key.pem" \
        --trusted-ca-file "$TLS_DIR/ca.pem" \
        --client-cert-auth \
        --listen-peer-urls "http://127.0.0.1:$((p + 3))" \
        --initial-advertise-peer-urls "http://127.0.0.1:$((p + 3))" \
        --initial-cluster "rgtr-tls=http://127.0.0.1:$((p + 3))" \
        --initial-cluster-token rgtr-tls \
        --initial-cluster-state new \
        --logger zap --log-outputs stderr
    printf '%s\n' "$p" >"$DIR/etcd.port"
    # A new start begins with empty data (restart-etcd keeps it).
    rm -rf "$ETCD_DATA" "$ETCD_TLS_DATA"
}

# etcd_ready PORT: healthy, v2 API and v3 gRPC gateway answering.
etcd_ready() {
    local base=http://127.0.0.1:$1 out
    out=$(curl_local -f --max-time 2 "$base/health" 2>/dev/null) || return 1
    [[ $out == *'"health":"true"'* ]] || return 1
    out=$(curl_local -f --max-time 2 "$base/v2/keys/" 2>/dev/null) || return 1
    [[ $out == *'"action":"get"'* ]] || return 1
    out=$(curl_local -f --max-time 2 -X POST -d '{}' "$base/v3/maintenance/status" 2>/dev/null) || return 1
    [[ $out == *'"version"'* ]]
}

# etcd_tls_ready PORT: healthy over HTTPS with the test client certificate.
etcd_tls_ready() {
    local out
    out=$(curl_local -f --max-time 2 --cacert "$TLS_DIR/ca.pem" \
        --cert "$TLS_DIR/client.pem" --key "$TLS_DIR/client-key.pem" \
        "https://127.0.0.1:$1/health" 2>/dev/null) || return 1
    [[ $out == *'"health":"true"'* ]]
}

start_etcd() {
    [ -s "$DIR/etcd.port" ] || die "no saved etcd port in $DIR (run '$0 start $DIR' first)"
    local port
    port=$(cat "$DIR/etcd.port")
    launch etcd "$ETCD_CMD" "$ETCD_PIDFILE" "$ETCD_LOG" "$port" $((port + 1))
    wait_until etcd "$LAUNCHED_PID" "$ETCD_LOG" "$ETCD_WAIT" etcd_ready "$port"
    log "etcd is up on 127.0.0.1:$port (pid $LAUNCHED_PID)"
}

stop_etcd() {
    local pid
    if pid=$(pidfile_pid "$ETCD_PIDFILE"); then
        stop_pid etcd "$pid"
    fi
    rm -f "$ETCD_PIDFILE"
}

wipe_etcd() {
    stop_etcd
    rm -rf "$ETCD_DATA"
    start_etcd
    log "etcd restarted with an empty data dir"
}

start_etcd_tls() {
    [ -s "$DIR/etcd.port" ] || die "no saved etcd port in $DIR (run '$0 start $DIR' first)"
    local port
    port=$(($(cat "$DIR/etcd.port") + 2))
    launch "TLS etcd" "$ETCD_TLS_CMD" "$ETCD_TLS_PIDFILE" "$ETCD_TLS_LOG" "$port" $((port + 1))
    wait_until "TLS etcd" "$LAUNCHED_PID" "$ETCD_TLS_LOG" "$ETCD_WAIT" etcd_tls_ready "$port"
    log "TLS etcd is up on https://127.0.0.1:$port (pid $LAUNCHED_PID)"
}

stop_etcd_tls() {
    local pid
    if pid=$(pidfile_pid "$ETCD_TLS_PIDFILE"); then
        stop_pid "TLS etcd" "$pid"
    fi
    rm -f "$ETCD_TLS_PIDFILE"
}

# ------------------------------------------------------------ zookeeper --

# A standalone server run directly with java (neither systemd nor the Debian
# init script / zkServer.sh), configured only by DIR/zk: zoo.cfg and a log4j
# config that logs to stdout, which run_bg appends to DIR/zk.log. The JVM
# is kept small; -XX:-UsePerfData avoids /tmp/hsperfdata_*.
write_zk_config() {
    ports_free "ZooKeeper uses ZK_PORT=$ZK_PORT; set ZK_PORT" "$ZK_PORT"
    rm -rf "$ZK_DIR"
    mkdir -p "$ZK_DIR/data"
    cat >"$ZK_DIR/zoo.cfg" <<EOF
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$ZK_DIR/data
clientPort=$ZK_PORT
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,stat,cons,dump,mntr
EOF
    cat >"$ZK_DIR/log4j.properties" <<'EOF'
log4j.rootLogger=INFO, CONSOLE
log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender
log4j.appender.CONSOLE.Target=System.out
log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout
log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} - %-5p [%t:%C{1}@%L] - %m%n
EOF
    local cp
    cp=$(IFS=:; printf '%s' "${ZK_JARS[*]}")
    save_cmd "$ZK_CMD" env -i "$JAVA" \
        -Xms16m -Xmx128m -XX:+UseSerialGC -XX:-UsePerfData \
        -Djava.awt.headless=true -Djava.net.preferIPv4Stack=true \
        -Dlog4j.configuration="file:$ZK_DIR/log4j.properties" \
        -Dzookeeper.log.dir="$DIR" -Dzookeeper.log.file=zk.log \
        -Dzookeeper.jmx.log4j.disable=true \
        -cp "$cp" \
        "$ZK_MAIN" "$ZK_DIR/zoo.cfg"
    printf '%s\n' "$ZK_PORT" >"$DIR/zk.port"
}

# zk_4lw PORT WORD: send a four-letter word, print the answer (bash
# /dev/tcp; no nc needed). Bounded by timeout(1).
zk_4lw() {
    # shellcheck disable=SC2016 # $1/$2 are expanded by the inner bash
    timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf %s "$2" >&3 && cat <&3' \
        zk_4lw "$1" "$2" 2>/dev/null || true
}

# zk_ready PORT: "imok" to ruok, and srvr shows a serving standalone server.
zk_ready() {
    [ "$(zk_4lw "$1" ruok)" = imok ] && [[ $(zk_4lw "$1" srvr) == *"Mode: standalone"* ]]
}

start_zk() {
    [ -s "$DIR/zk.port" ] || die "no saved ZooKeeper port in $DIR (run '$0 start $DIR' first)"
    local port
    port=$(cat "$DIR/zk.port")
    launch zookeeper "$ZK_CMD" "$ZK_PIDFILE" "$ZK_LOG" "$port"
    wait_until zookeeper "$LAUNCHED_PID" "$ZK_LOG" "$ZK_WAIT" zk_ready "$port"
    log "zookeeper is up on 127.0.0.1:$port (pid $LAUNCHED_PID)"
}

stop_zk() {
    local pid
    if pid=$(pidfile_pid "$ZK_PIDFILE"); then
        stop_pid zookeeper "$pid"
    fi
    rm -f "$ZK_PIDFILE"
}

# ------------------------------------------------------------- cleanup --

# Unmount anything left below DIR (overlay layers, netns bind mounts), deepest
# first.
unmount_all() {
    local m
    [ -d "$DIR" ] || return 0
    awk -v pre="$DIR/" 'index($5, pre) == 1 {print $5}' /proc/self/mountinfo |
        awk '{print length($0) " " $0}' | sort -rn | cut -d' ' -f2- |
        while IFS= read -r m; do
            log "unmounting $m"
            umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null ||
                log "WARNING: cannot unmount $m"
        done
}

remove_bridge() {
    local br
    [ -s "$BRIDGE_FILE" ] || return 0
    br=$(cat "$BRIDGE_FILE")
    if ip link show "$br" >/dev/null 2>&1; then
        log "deleting bridge $br"
        ip link del "$br" || log "WARNING: cannot delete bridge $br"
    fi
    rm -f "$BRIDGE_FILE" "$DOCKER_DIR/bridge-cidr"
}

# /run/containerd{,/s} if start created it and it is empty again (rmdir
# never removes anything still in use).
remove_run_containerd() {
    [ -e "$CTRD_DIR/created-run-containerd" ] || return 0
    rmdir /run/containerd/s 2>/dev/null || true
    rmdir /run/containerd 2>/dev/null || true
    rm -f "$CTRD_DIR/created-run-containerd"
}

# Empty cgroup directories the engine leaves behind (v1 hierarchies and v2).
remove_cgroups() {
    local d
    for d in /sys/fs/cgroup/*"$CGROUP_PARENT" /sys/fs/cgroup"$CGROUP_PARENT"; do
        if [ -d "$d" ]; then rmdir "$d" 2>/dev/null || true; fi
    done
}

# ------------------------------------------------------------ commands --

on_start_exit() {
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        log "start failed, cleaning up"
        cmd_stop_quiet
    fi
}

cmd_start() {
    set_paths "$1" create
    local t0=$SECONDS
    check_engine_prereqs
    check_extra_prereqs
    local f
    for f in "$DOCKERD_PIDFILE" "$CTRD_PIDFILE" "$CONSUL_PIDFILE" "$ETCD_PIDFILE" \
        "$ETCD_TLS_PIDFILE" "$ZK_PIDFILE"; do
        if pidfile_pid "$f" >/dev/null; then
            die "services already running for $DIR ($f); run '$0 stop $DIR' first"
        fi
    done
    check_busybox
    mkdir -p "$DOCKER_DIR"

    # From here on, a failure tears down whatever was already started (the
    # logs stay in DIR for inspection).
    trap on_start_exit EXIT

    resolve_consul_bin
    make_tls
    # All port checks before anything is started.
    write_consul_cmd
    write_etcd_cmds
    write_zk_config

    local driver
    driver=$(pick_storage_driver)
    log "storage driver: $driver"
    setup_bridge
    write_engine_config "$driver"
    start_engine
    build_images
    verify_published_port

    start_consul
    start_etcd
    start_etcd_tls
    start_zk

    {
        printf 'export DOCKER_HOST=%q\n' "unix://$SOCK"
        printf 'export CONSUL_HTTP_ADDR=%q\n' "127.0.0.1:$CONSUL_PORT"
        printf 'export CONSUL_HTTPS_ADDR=%q\n' "127.0.0.1:$((CONSUL_PORT + 4))"
        printf 'export RGTR_CONSUL_SOCK=%q\n' "$CONSUL_SOCK"
        printf 'export RGTR_TEST_DIR=%q\n' "$DIR"
        printf 'export CONSUL_BIN=%q\n' "$CONSUL"
        printf 'export RGTR_CONSUL_TOKEN=%q\n' "$CONSUL_MASTER_TOKEN"
        printf 'export RGTR_TLS_DIR=%q\n' "$TLS_DIR"
        printf 'export ETCD_ADDR=%q\n' "127.0.0.1:$ETCD_PORT"
        printf 'export ETCD_TLS_ADDR=%q\n' "127.0.0.1:$((ETCD_PORT + 2))"
        printf 'export ZK_ADDR=%q\n' "127.0.0.1:$ZK_PORT"
    } >"$DIR/env"
    trap - EXIT
    log "all services up in $((SECONDS - t0))s; source $DIR/env"
}

cmd_stop_quiet() {
    # Best effort: every step runs even if an earlier one failed.
    set +e
    if docker_ping; then
        local ids
        ids=$(dk ps -aq 2>/dev/null)
        if [ -n "$ids" ]; then
            log "removing containers"
            # shellcheck disable=SC2086
            dk rm -f -v $ids >/dev/null 2>&1
        fi
    fi
    stop_engine
    stop_consul
    stop_etcd
    stop_etcd_tls
    stop_zk
    kill_orphaned_containers
    kill_leftovers
    unmount_all
    remove_bridge
    remove_cgroups
    remove_run_containerd
    rm -f "$SOCK" "$CTRD_SOCK" "$CONSUL_SOCK"
    set -e
}

cmd_stop() {
    set_paths "$1"
    [ "$(id -u)" = 0 ] || die "must run as root"
    if [ ! -d "$DIR" ]; then
        log "$DIR does not exist; nothing to stop"
        return 0
    fi
    cmd_stop_quiet
    log "stopped"
}

# in_dir DIR STEP...: run each step on the services of an existing DIR.
in_dir() {
    set_paths "$1"
    shift
    [ -d "$DIR" ] || die "$DIR does not exist"
    local step
    for step in "$@"; do "$step"; done
}

# Sourced (tests/docker28.sh reuses the engine and TLS functions above): define, run nothing.
if [ "${BASH_SOURCE[0]}" != "$0" ]; then
    return 0
fi

[ $# -eq 2 ] || usage
case $1 in
    start) cmd_start "$2" ;;
    stop) cmd_stop "$2" ;;
    stop-docker) in_dir "$2" stop_engine ;;
    start-docker) in_dir "$2" start_engine ;;
    restart-docker) in_dir "$2" stop_engine start_engine ;;
    stop-consul) in_dir "$2" stop_consul ;;
    start-consul) in_dir "$2" start_consul ;;
    restart-consul) in_dir "$2" stop_consul start_consul ;;
    stop-etcd) in_dir "$2" stop_etcd ;;
    start-etcd) in_dir "$2" start_etcd ;;
    restart-etcd) in_dir "$2" stop_etcd start_etcd ;;
    wipe-etcd) in_dir "$2" wipe_etcd ;;
    stop-zk) in_dir "$2" stop_zk ;;
    start-zk) in_dir "$2" start_zk ;;
    restart-zk) in_dir "$2" stop_zk start_zk ;;
    *) usage ;;
esac
