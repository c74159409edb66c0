#!/usr/bin/env bash
# Start/stop the real services used by the end-to-end tests:
#   * a PRIVATE Docker engine (its own containerd + dockerd, own bridge, own
#     socket, all state under DIR), never touching a system docker;
#   * test images built offline with `docker import` from busybox-static;
#   * a Consul dev agent listening on 127.0.0.1 only.
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
#
# Environment (all optional):
#   CONSUL_PORT          Consul HTTP port (default 18500); serf_lan, serf_wan
#                        and server RPC use CONSUL_PORT+1, +2, +3.
#   CONSUL_BIN           consul binary to use instead of the vendored .deb
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
# through a dead proxy on 127.0.0.1:9.

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)

BRIDGE=${RGTR_BRIDGE:-rgtr0}
BRIDGE_CIDR=${RGTR_BRIDGE_CIDR:-10.213.77.1/24}
CONSUL_PORT=${CONSUL_PORT:-18500}
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

# The docker CLI must talk to the private engine only, whatever the caller's
# environment says.
unset DOCKER_CONTEXT DOCKER_TLS_VERIFY DOCKER_CERT_PATH DOCKER_HOST

log() { printf '[services.sh] %s\n' "$*" >&2; }
die() { printf '[services.sh] ERROR: %s\n' "$*" >&2; exit 1; }

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
    BRIDGE_FILE=$DOCKER_DIR/bridge
}

# --------------------------------------------------------------- helpers --

need_cmd() {
    command -v "$1" >/dev/null 2>&1 ||
        die "required command '$1' not found${2:+ ($2)}"
}

# Print the last lines of a log file to stderr (used on every failure).
log_tail() {
    local f=$1
    if [ -s "$f" ]; then
        printf '[services.sh] ---- last lines of %s ----\n' "$f" >&2
        tail -n "${2:-40}" "$f" >&2 || true
        printf '[services.sh] ---- end of %s ----\n' "$f" >&2
    else
        printf '[services.sh] (%s is empty or missing)\n' "$f" >&2
    fi
}

# pid_alive PID: true if PID exists and is not a zombie.
pid_alive() {
    local pid=$1 state
    [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
    state=$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

# pidfile_pid FILE: print the pid from FILE if that process is alive.
pidfile_pid() {
    local pid
    [ -s "$1" ] || return 1
    pid=$(tr -dc 0-9 <"$1")
    pid_alive "$pid" || return 1
    printf '%s\n' "$pid"
}

# stop_pid NAME PID: SIGTERM, wait (bounded), then SIGKILL as a last resort.
stop_pid() {
    local name=$1 pid=$2 i
    pid_alive "$pid" || return 0
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_WAIT; i++)); do
        pid_alive "$pid" || return 0
        sleep 0.1
    done
    log "WARNING: $name (pid $pid) ignored SIGTERM for $((STOP_WAIT / 10))s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        pid_alive "$pid" || return 0
        sleep 0.1
    done
    log "WARNING: $name (pid $pid) still exists after SIGKILL"
}

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
curl_local() { curl --noproxy '*' -sS "$@"; }

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
    local p=$DOCKER_DIR/overlay-probe driver=vfs
    rm -rf "$p"
    mkdir -p "$p/lower" "$p/upper" "$p/work" "$p/merged"
    if mount -t overlay rgtr-overlay-probe \
        -o "lowerdir=$p/lower,upperdir=$p/upper,workdir=$p/work" \
        "$p/merged" 2>/dev/null; then
        if touch "$p/merged/x" 2>/dev/null; then
            driver=overlay2
        fi
        umount "$p/merged" 2>/dev/null || umount -l "$p/merged" 2>/dev/null || true
    fi
    rm -rf "$p"
    printf '%s\n' "$driver"
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

# Kill engine processes that still refer to DIR (e.g. containerd shims after
# a SIGKILLed containerd). Only our own binaries are considered, never the
# caller, whose command line may contain DIR too.
kill_leftovers() {
    local p exe cmdline
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        [ "$p" != $$ ] || continue
        exe=$(readlink "/proc/$p/exe" 2>/dev/null) || continue
        case ${exe##*/} in
            containerd | containerd-shim* | dockerd | docker-proxy | consul) ;;
            *) continue ;;
        esac
        cmdline=$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null) || continue
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
    local cidr p exe args ip
    cidr=$(cat "$DOCKER_DIR/bridge-cidr")
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
    local root=$DIR/images/rootfs a applets
    rm -rf "$root"
    mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root" "$root/var/www" \
        "$root/proc" "$root/sys" "$root/dev"
    chmod 1777 "$root/tmp"
    cp "$BUSYBOX" "$root/bin/busybox"
    chmod 0755 "$root/bin/busybox"
    applets=$("$BUSYBOX" --list)
    for a in sh ash sleep httpd nc true false echo cat test '[' kill ls ps \
        wget env mkdir rm id hostname printf grep sed seq date touch \
        uname head tail wc sort tr cut awk pidof; do
        grep -qxF -- "$a" <<<"$applets" || continue
        ln -sf busybox "$root/bin/$a"
    done
    for a in sh sleep httpd nc true false echo cat test kill; do
        [ -L "$root/bin/$a" ] || die "$BUSYBOX lacks the '$a' applet"
    done
    cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
    cat >"$root/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
    # So that `httpd -f -p 80 -h /tmp` (or -h /var/www) answers 200 on "/",
    # as Consul HTTP checks require a 2xx.
    echo ok >"$root/tmp/index.html"
    echo ok >"$root/var/www/index.html"

    local tarball=$DIR/images/rootfs.tar
    tar --numeric-owner --owner=0 --group=0 -C "$root" -cf "$tarball" .

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
    for p in "$CONSUL_PORT" $((CONSUL_PORT + 1)) $((CONSUL_PORT + 2)) $((CONSUL_PORT + 3)); do
        port_in_use "$p" &&
            die "port $p is already in use (Consul uses CONSUL_PORT=$CONSUL_PORT .. +3); set CONSUL_PORT"
    done
    # ACLs are on with an allow-all default, so requests without a token work and a token the
    # agent does not know is refused (403): that shows a client really sends its token.
    # -dev keeps all state in memory. DNS and gRPC are disabled, the other
    # ports moved next to the HTTP port so a system consul on the default
    # ports is never disturbed. Update checks / anonymous signatures would
    # contact checkpoint-api.hashicorp.com: disabled. Consul HTTP checks honour
    # proxy variables except for loopback targets, so the dead 127.0.0.1
    # proxy makes an HTTP check against anything but 127.0.0.1 (e.g. a
    # container IP) fail instead of sending traffic there.
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
        -hcl "ports { serf_lan = $((CONSUL_PORT + 1)) serf_wan = $((CONSUL_PORT + 2)) server = $((CONSUL_PORT + 3)) grpc = -1 }" \
        -hcl 'disable_update_check = true' \
        -hcl 'disable_anonymous_signature = true' \
        -hcl "acl { enabled = true default_policy = \"allow\" tokens { master = \"$CONSUL_MASTER_TOKEN\" } }" \
        -pid-file "$CONSUL_PIDFILE"
    printf '%s\n' "$CONSUL_PORT" >"$DIR/consul.port"
}

start_consul() {
    [ -s "$CONSUL_CMD" ] || die "no saved consul command in $DIR (run '$0 start $DIR' first)"
    local pid port i leader=""
    if pid=$(pidfile_pid "$CONSUL_PIDFILE"); then
        die "consul already running (pid $pid) for $DIR"
    fi
    port=$(cat "$DIR/consul.port")
    rm -f "$CONSUL_PIDFILE"
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
    log "consul is up on 127.0.0.1:$port (pid $pid, leader $leader)"
}

stop_consul() {
    local pid
    if pid=$(pidfile_pid "$CONSUL_PIDFILE"); then
        stop_pid consul "$pid"
    fi
    rm -f "$CONSUL_PIDFILE"
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
    if pidfile_pid "$DOCKERD_PIDFILE" >/dev/null || pidfile_pid "$CONSUL_PIDFILE" >/dev/null; then
        die "services already running for $DIR; run '$0 stop $DIR' first"
    fi
    check_busybox
    mkdir -p "$DOCKER_DIR"

    # From here on, a failure tears down whatever was already started (the
    # logs stay in DIR for inspection).
    trap on_start_exit EXIT

    resolve_consul_bin
    write_consul_cmd

    local driver
    driver=$(pick_storage_driver)
    log "storage driver: $driver"
    setup_bridge
    write_engine_config "$driver"
    start_engine
    build_images
    verify_published_port

    start_consul

    {
        printf 'export DOCKER_HOST=%q\n' "unix://$SOCK"
        printf 'export CONSUL_HTTP_ADDR=%q\n' "127.0.0.1:$CONSUL_PORT"
        printf 'export RGTR_TEST_DIR=%q\n' "$DIR"
        printf 'export CONSUL_BIN=%q\n' "$CONSUL"
        printf 'export RGTR_CONSUL_TOKEN=%q\n' "$CONSUL_MASTER_TOKEN"
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
    kill_orphaned_containers
    kill_leftovers
    unmount_all
    remove_bridge
    remove_cgroups
    remove_run_containerd
    rm -f "$SOCK" "$CTRD_SOCK"
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
    *) usage ;;
esac
