#!/usr/bin/env bash
# Start/stop a PRIVATE, rootful Podman engine whose Docker-compatible API is
# served on a unix socket under DIR, for the end-to-end tests. Everything it
# uses lives in DIR/podman: storage (graphroot, runroot), libpod's tmp dir,
# runc's state, network configs, the events file, config files, the socket,
# logs and the pid file. /etc/containers and any system podman are never
# used or touched (config comes from CONTAINERS_CONF & co. and global flags).
#
# Usage:
#   tests/podman.sh start DIR    (re)start the engine, import the test
#                                images, write DIR/podman/env
#   tests/podman.sh stop DIR     remove every container, stop the service,
#                                leave no process behind (idempotent)
#
# DIR/podman/env exports:
#   PODMAN_HOST   unix://DIR/podman/podman.sock (Docker-compatible API; the
#                 docker CLI works with DOCKER_HOST=$PODMAN_HOST)
#   PODMAN_SOCK   the socket path alone
#   PODMAN        DIR/podman/podman, a wrapper running the podman CLI with
#                 this engine's config, storage and flags (local mode: it
#                 works on the same storage and events file as the service)
#   PODMAN_DIR    DIR/podman
#
# Images (same names as tests/services.sh gives the docker engine), built
# with `podman import` from a busybox-static rootfs, nothing is pulled:
#   bb:latest, redis:latest (EXPOSE 6379), nginx:latest (EXPOSE 80 443),
#   all with CMD ["sleep","1000000"]. Podman stores them as localhost/NAME;
#   the Docker API and CLI find them under the short names (bb, bb:latest)
#   and report them as localhost/NAME:latest (Config.Image, "from").
#
# Environment (all optional):
#   RGTR_PODMAN_BRIDGE   bridge of the podman network (default rgtrpod0)
#   RGTR_PODMAN_SUBNET   its subnet (default 10.89.77.0/24)
#   RGTR_PODMAN_NETWORK  network name (default rgtr-podman)
#   RGTR_STORAGE_DRIVER  force the storage driver (overlay or vfs; default
#                        overlay if an overlay mount works under DIR)
#   RGTR_BUSYBOX         static busybox (default /bin/busybox)
#   PODMAN_UP_WAIT       seconds to wait for /_ping (default 60)
#
# What this sandbox needs (found by trying, Debian bookworm podman 4.3.1):
#   * cgroup v1 (hybrid) and no systemd as PID 1: cgroup manager cgroupfs,
#     events logger "file" (no journald), log driver k8s-file.
#   * HEALTHCHECKs: podman schedules them with systemd timers; without
#     systemd every start/stop of a container with a healthcheck logs
#     "unable to get systemd connection to add healthchecks" (the container
#     still runs). DISABLE_HC_SYSTEMD=true, set here for the service and the
#     wrapper, skips the timers quietly. Either way health checks NEVER run
#     by themselves here (the state stays "starting"): run one with
#     `$PODMAN healthcheck run CTR` or GET /v4.0.0/libpod/containers/CTR/healthcheck
#     on the socket; each run updates the health state and emits an event.
#   * exec: an exec session started through the Docker API (docker exec)
#     keeps two conmon processes alive for exit_command_delay seconds after
#     the command ended (default 300, so that GET /exec/ID/json still
#     works); set to 10 here so they do not pile up.
#   * ulimits: explicit default_ulimits (nofile=1024:1024, nproc=4096:4096)
#     so containers do not inherit whatever the sandbox's limits are.
#   * networking: netavark (podman 4.3's default backend; Debian package
#     netavark, CNI plugins are not installed) with a
#     bridge network of our own (RGTR_PODMAN_BRIDGE/SUBNET, no DNS, so no
#     aardvark-dns) as the default network. netavark always sets
#     net.ipv4.ip_forward=1 and adds NAT/MASQUERADE rules (iptables, nft
#     backend) for a non-internal network, and published ports are iptables
#     DNAT rules (for 127.0.0.1 it also sets route_localnet on the bridge).
#     An "internal" network would avoid all that but cannot publish ports.
#     So that nothing the containers do can reach a non-loopback address, a
#     rule in the mangle table's FORWARD chain drops every ROUTED packet
#     while the engine runs (bridged traffic between containers of one
#     bridge still passes), and `stop` restores net.ipv4.ip_forward to the
#     value it had before `start`. Published ports on 127.0.0.1 do not need
#     forwarding (locally generated traffic, DNAT in OUTPUT).
#   * registry access: none. registries.conf has no search registries, the
#     service and the wrapper run with proxy variables pointing at a dead
#     127.0.0.1:9, so an accidental pull fails fast. Containers do not get
#     the host's proxy variables (http_proxy = false) and their DNS server
#     is 127.0.0.1.
#   * locks: lock_type "file" (under DIR) rather than the default shm
#     segment /dev/shm/libpod_lock that a system podman would share.
#   * runc state: in DIR/podman/runc instead of /run/runc, through a runc
#     wrapper DIR/podman/bin/runc.
#   * init: unlike the docker engine of tests/services.sh (dockerd --init),
#     podman 4.3 has no working engine-wide default (containers.conf
#     `init = true` is ignored by both the CLI and the API). `docker run
#     --init` / `podman run --init` work (catatonit as /run/podman-init).
#     Containers created through the Docker API without a stop timeout get
#     StopTimeout 0, so `docker stop` SIGKILLs them at once (exit 137);
#     containers made with the podman CLI get 10 s, which a busybox `sleep`
#     as PID 1 (ignores SIGTERM) waits out in full.
#
# Network policy: as tests/services.sh: only the unix socket and ports
# published on 127.0.0.1 are ever contacted.

set -euo pipefail

BRIDGE=${RGTR_PODMAN_BRIDGE:-rgtrpod0}
SUBNET=${RGTR_PODMAN_SUBNET:-10.89.77.0/24}
NETWORK=${RGTR_PODMAN_NETWORK:-rgtr-podman}
BUSYBOX=${RGTR_BUSYBOX:-/bin/busybox}
UP_WAIT=${PODMAN_UP_WAIT:-60}
STOP_WAIT=200 # tenths of a second for a process to exit after SIGTERM
DEAD_PROXY=http://127.0.0.1:9
FW_COMMENT=rgtr-podman-noforward

# The docker/podman CLIs must talk to nothing else by accident.
unset DOCKER_HOST DOCKER_CONTEXT CONTAINER_HOST CONTAINER_CONNECTION \
    CONTAINERS_CONF CONTAINERS_STORAGE_CONF CONTAINERS_REGISTRIES_CONF

TAG=podman.sh
# shellcheck source=tests/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    sed -n 's/^#   \(tests\/podman\.sh .*\)/  \1/p' "${BASH_SOURCE[0]}" >&2
    exit 2
}

set_paths() {
    local dir=$1 create=${2:-}
    [ -n "$dir" ] || usage
    [ -z "$create" ] || mkdir -p "$dir"
    if [ -d "$dir" ]; then
        DIR=$(cd "$dir" && pwd -P)
    else
        DIR=$dir
    fi
    P=$DIR/podman
    SOCK=$P/podman.sock
    PIDFILE=$P/podman.pid
    LOGF=$P/service.log
    CONF_DIR=$P/conf
    WRAPPER=$P/podman
    ENVF=$P/env
    RUNC_ROOT=$P/runc
    RUNC_WRAPPER=$P/bin/runc
    FWD_SAVE=$P/ip_forward.orig
    FW_ARGS=(-m physdev ! --physdev-is-bridged -m comment --comment "$FW_COMMENT $P" -j DROP)
}

# (log, die, need_cmd, log_tail, pid_alive, pidfile_pid, stop_pid, curl_local and
# make_rootfs are in tests/lib.sh, shared with tests/services.sh.)

ping_ok() {
    [ -S "$SOCK" ] &&
        [ "$(curl_local --max-time 3 --unix-socket "$SOCK" http://d/_ping 2>/dev/null)" = OK ]
}

check_prereqs() {
    [ "$(id -u)" = 0 ] || die "must run as root (rootful podman, bridges, iptables)"
    need_cmd podman "Debian package podman"
    need_cmd conmon "Debian package conmon"
    need_cmd runc "Debian package runc"
    need_cmd iptables "Debian package iptables"
    need_cmd curl "Debian package curl"
    need_cmd setsid "Debian package util-linux"
    need_cmd tar
    [ -x /usr/lib/podman/netavark ] || [ -x /usr/libexec/podman/netavark ] ||
        die "netavark not found (Debian package netavark)"
    INIT_PATH=$(command -v catatonit 2>/dev/null ||
        { [ -x /usr/libexec/podman/catatonit ] && echo /usr/libexec/podman/catatonit; } ||
        { [ -x /usr/bin/tini-static ] && echo /usr/bin/tini-static; } || true)
    [ -n "$INIT_PATH" ] || die "no container init found (Debian package catatonit)"
    if [ ! -f "$BUSYBOX" ] || [ ! -x "$BUSYBOX" ]; then
        die "busybox not found at $BUSYBOX (install Debian package busybox-static)"
    fi
    if command -v ldd >/dev/null 2>&1 && ldd "$BUSYBOX" >/dev/null 2>&1; then
        die "$BUSYBOX is dynamically linked; the images need a static one (Debian package busybox-static)"
    fi
    # Unix socket paths (conmon's attach socket, the API socket) are limited
    # to 108 bytes.
    [ "${#DIR}" -le 60 ] ||
        die "DIR '$DIR' is ${#DIR} characters long; use a path of at most 60 (e.g. mktemp -d)"
}

pick_storage_driver() {
    if [ -n "${RGTR_STORAGE_DRIVER:-}" ]; then
        case $RGTR_STORAGE_DRIVER in
            overlay2) echo overlay ;;
            *) printf '%s\n' "$RGTR_STORAGE_DRIVER" ;;
        esac
        return
    fi
    if overlay_works "$P/overlay-probe"; then
        printf '%s\n' overlay
    else
        printf '%s\n' vfs
    fi
}

write_config() {
    local driver=$1
    mkdir -p "$CONF_DIR" "$P/root" "$P/runroot" "$P/tmp" "$P/imgtmp" "$P/networks" \
        "$P/volumes" "$P/events" "$RUNC_ROOT"
    chmod 0700 "$P"

    # runc keeping its state below DIR instead of /run/runc. A wrapper, not
    # --runtime-flag root=...: podman passes --runtime but not --runtime-flag
    # on to the exit command (`podman container cleanup`) that conmon runs,
    # which would then look for the container in /run/runc. Its name must
    # stay "runc" (podman keys runtime features on the name).
    mkdir -p "$P/bin"
    printf '#!/bin/sh\nexec %q --root %q "$@"\n' "$(command -v runc)" "$RUNC_ROOT" >"$RUNC_WRAPPER"
    chmod 0755 "$RUNC_WRAPPER"

    cat >"$CONF_DIR/storage.conf" <<EOF
[storage]
driver = "$driver"
graphroot = "$P/root"
runroot = "$P/runroot"
EOF

    cat >"$CONF_DIR/registries.conf" <<'EOF'
# No registry is ever searched or contacted by these tests.
unqualified-search-registries = []
short-name-mode = "disabled"
EOF

    cat >"$CONF_DIR/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
http_proxy = false
dns_servers = ["127.0.0.1"]
init_path = "$INIT_PATH"
log_driver = "k8s-file"
netns = "bridge"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$P/events/events.log"
events_logfile_max_size = 0
runtime = "runc"
tmp_dir = "$P/tmp"
volume_path = "$P/volumes"
image_copy_tmp_dir = "$P/imgtmp"
lock_type = "file"
stop_timeout = 10
exit_command_delay = 10
pull_policy = "never"

[engine.runtimes]
runc = ["$RUNC_WRAPPER"]

[network]
network_backend = "netavark"
network_config_dir = "$P/networks"
default_network = "$NETWORK"
default_subnet = "$SUBNET"
EOF

    # Global flags: repeated from the config files on purpose, so that the
    # exit command conmon runs (`podman container cleanup`, which inherits
    # CONTAINERS_CONF but not CONTAINERS_STORAGE_CONF) uses the same places.
    GLOBAL_FLAGS=(--root "$P/root" --runroot "$P/runroot" --tmpdir "$P/tmp"
        --storage-driver "$driver" --cgroup-manager cgroupfs --events-backend file
        --runtime "$RUNC_WRAPPER"
        --network-config-dir "$P/networks" --volumepath "$P/volumes")
    ENV_VARS=(CONTAINERS_CONF="$CONF_DIR/containers.conf"
        CONTAINERS_STORAGE_CONF="$CONF_DIR/storage.conf"
        CONTAINERS_REGISTRIES_CONF="$CONF_DIR/registries.conf"
        TMPDIR="$P/imgtmp"
        DISABLE_HC_SYSTEMD=true
        "HTTP_PROXY=$DEAD_PROXY" "http_proxy=$DEAD_PROXY"
        "HTTPS_PROXY=$DEAD_PROXY" "https_proxy=$DEAD_PROXY"
        NO_PROXY=localhost no_proxy=localhost)

    {
        printf '#!/bin/sh\n'
        printf '# podman CLI bound to the private engine in %s (local mode, same storage).\n' "$P"
        printf 'unset CONTAINER_HOST CONTAINER_CONNECTION\n'
        printf 'exec env'
        printf ' %q' "${ENV_VARS[@]}" "$(command -v podman)" "${GLOBAL_FLAGS[@]}"
        printf ' "$@"\n'
    } >"$WRAPPER"
    chmod 0755 "$WRAPPER"
}

pm() { "$WRAPPER" "$@"; }

# Drop every routed packet while the engine runs (see the header).
firewall_on() {
    [ -s "$FWD_SAVE" ] || cat /proc/sys/net/ipv4/ip_forward >"$FWD_SAVE"
    iptables -w -t mangle -C FORWARD "${FW_ARGS[@]}" 2>/dev/null && return 0
    iptables -w -t mangle -I FORWARD 1 "${FW_ARGS[@]}" ||
        die "cannot add the iptables mangle FORWARD rule"
}

firewall_off() {
    while iptables -w -t mangle -D FORWARD "${FW_ARGS[@]}" 2>/dev/null; do :; done
    if [ -s "$FWD_SAVE" ]; then
        local v
        v=$(tr -dc 0-9 <"$FWD_SAVE")
        if [ -n "$v" ] && [ "$(cat /proc/sys/net/ipv4/ip_forward)" != "$v" ]; then
            log "restoring net.ipv4.ip_forward=$v"
            echo "$v" >/proc/sys/net/ipv4/ip_forward
        fi
        rm -f "$FWD_SAVE"
    fi
}

start_service() {
    local pid i
    rm -f "$SOCK"
    log "starting podman system service on $SOCK"
    local t0
    t0=$(date +%s.%N)
    # No job control: setsid(1) calls setsid(2) in place, so $! is podman.
    setsid env "${ENV_VARS[@]}" "$(command -v podman)" "${GLOBAL_FLAGS[@]}" --log-level info \
        system service --time=0 "unix://$SOCK" </dev/null >>"$LOGF" 2>&1 &
    pid=$!
    printf '%s\n' "$pid" >"$PIDFILE"
    for ((i = 0; i < UP_WAIT * 10; i++)); do
        ping_ok && break
        if ! pid_alive "$pid"; then
            log_tail "$LOGF"
            die "podman system service exited during startup (log: $LOGF)"
        fi
        sleep 0.1
    done
    if ! ping_ok; then
        log_tail "$LOGF"
        die "podman did not answer /_ping on $SOCK within ${UP_WAIT}s (log: $LOGF)"
    fi
    log "podman service is up (pid $pid) after $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')s"
}

# The network is written as a netavark config file rather than made with
# `podman network create`, which in 4.3 cannot name the bridge (it picks
# podman1, podman2, ... and could clash with a system podman's).
write_network() {
    if ip link show "$BRIDGE" >/dev/null 2>&1; then
        if [ -n "$(ip -o link show master "$BRIDGE" 2>/dev/null)" ]; then
            die "bridge $BRIDGE exists and has interfaces attached (another engine?); set RGTR_PODMAN_BRIDGE/RGTR_PODMAN_SUBNET"
        fi
        ip link delete "$BRIDGE" 2>/dev/null || true
    fi
    local net=${SUBNET%/*} a b c d id
    IFS=. read -r a b c d <<<"$net"
    id=$(printf '%s %s' "$NETWORK" "$P" | sha256sum | cut -c1-64)
    cat >"$P/networks/$NETWORK.json" <<EOF
{
     "name": "$NETWORK",
     "id": "$id",
     "driver": "bridge",
     "network_interface": "$BRIDGE",
     "created": "$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)",
     "subnets": [
          {
               "subnet": "$SUBNET",
               "gateway": "$a.$b.$c.$((d + 1))"
          }
     ],
     "ipv6_enabled": false,
     "internal": false,
     "dns_enabled": false,
     "ipam_options": {
          "driver": "host-local"
     }
}
EOF
}

build_images() {
    local tarball
    mkdir -p "$P/images"
    tarball=$(make_rootfs "$P/images" "$BUSYBOX")

    local cmd='CMD ["sleep","1000000"]'
    pm import --quiet --change "$cmd" "$tarball" bb:latest >/dev/null ||
        die "podman import bb:latest failed"
    pm import --quiet --change "$cmd" --change 'EXPOSE 6379' "$tarball" redis:latest >/dev/null ||
        die "podman import redis:latest failed"
    pm import --quiet --change "$cmd" --change 'EXPOSE 80' --change 'EXPOSE 443' "$tarball" nginx:latest >/dev/null ||
        die "podman import nginx:latest failed"
    log "imported images: bb:latest redis:latest nginx:latest (stored as localhost/NAME)"
}

# Kill processes of this engine that outlived the service and its
# containers (conmon and container cleanup processes mention DIR/podman on
# their command line). A conmon of an exec session sleeping out its
# exit_command_delay ignores SIGTERM, hence the short wait.
kill_leftovers() {
    local p exe cmdline
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        [ "$p" != $$ ] || continue
        exe=$(readlink "/proc/$p/exe" 2>/dev/null) || continue
        case ${exe##*/} in
            podman | conmon | netavark | aardvark-dns | rootlessport | runc | catatonit) ;;
            *) continue ;;
        esac
        cmdline=$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null) || continue
        case $cmdline in
            *"$P/"*) stop_pid "leftover ${exe##*/}" "$p" 20 ;;
        esac
    done
}

# Container processes whose conmon died: runc knows them through its state
# dir below DIR.
kill_orphaned_containers() {
    local id
    [ -d "$RUNC_ROOT" ] || return 0
    for id in $(runc --root "$RUNC_ROOT" list -q 2>/dev/null); do
        log "deleting orphaned container $id"
        runc --root "$RUNC_ROOT" delete --force "$id" >/dev/null 2>&1 ||
            log "WARNING: runc could not delete $id"
    done
}

# netavark leaves its generic chains behind when the last container is gone
# (nat: NETAVARK-HOSTPORT-{DNAT,MASQ,SETMARK} and their jumps from
# PREROUTING/OUTPUT/POSTROUTING; filter: NETAVARK_FORWARD). Remove them,
# but only if no network of any netavark user (e.g. a system podman) has
# chains or port forwards left.
remove_netavark_chains() {
    local nat filter
    nat=$(iptables -w -t nat -S 2>/dev/null) || return 0
    filter=$(iptables -w -t filter -S 2>/dev/null) || return 0
    if grep -qE '^-N NETAVARK-(DN-)?[0-9A-F]+$' <<<"$nat" ||
        grep -qE '^-A NETAVARK-HOSTPORT-DNAT ' <<<"$nat" ||
        grep -qE '^-A NETAVARK_FORWARD ' <<<"$filter" ||
        grep -qE '^-N NETAVARK-ISOLATION' <<<"$filter"; then
        return 0
    fi
    iptables -w -t nat -D PREROUTING -m addrtype --dst-type LOCAL -j NETAVARK-HOSTPORT-DNAT 2>/dev/null
    iptables -w -t nat -D OUTPUT -m addrtype --dst-type LOCAL -j NETAVARK-HOSTPORT-DNAT 2>/dev/null
    iptables -w -t nat -D POSTROUTING -j NETAVARK-HOSTPORT-MASQ 2>/dev/null
    local c
    for c in NETAVARK-HOSTPORT-DNAT NETAVARK-HOSTPORT-MASQ NETAVARK-HOSTPORT-SETMARK; do
        iptables -w -t nat -F "$c" 2>/dev/null && iptables -w -t nat -X "$c" 2>/dev/null
    done
    iptables -w -t filter -D FORWARD -m comment --comment "netavark firewall plugin rules" -j NETAVARK_FORWARD 2>/dev/null
    iptables -w -t filter -F NETAVARK_FORWARD 2>/dev/null && iptables -w -t filter -X NETAVARK_FORWARD 2>/dev/null
    return 0
}

unmount_all() {
    local m
    # Deepest first.
    awk -v p="$P/" 'index($5, p) == 1 {print $5}' /proc/self/mountinfo | sort -r |
        while read -r m; do
            umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "WARNING: cannot unmount $m"
        done
}

# cgroupfs puts containers in /libpod_parent/libpod-ID and conmon in
# /libpod_parent/conmon of every hierarchy. Remove what is empty (rmdir
# fails on a cgroup that still has processes, e.g. a system podman's).
remove_cgroups() {
    local d
    for d in /sys/fs/cgroup/*/libpod_parent; do
        [ -d "$d" ] || continue
        find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
}

cmd_stop_quiet() {
    set +e
    local pid
    if [ -x "$WRAPPER" ]; then
        if [ -n "$("$WRAPPER" ps -aq 2>/dev/null)" ]; then
            log "removing containers"
            "$WRAPPER" rm -af -t 2 >/dev/null 2>&1 || log "WARNING: podman rm -af failed"
        fi
    fi
    if pid=$(pidfile_pid "$PIDFILE"); then
        stop_pid "podman service" "$pid"
    fi
    rm -f "$PIDFILE" "$SOCK"
    kill_orphaned_containers
    kill_leftovers
    ip link show "$BRIDGE" >/dev/null 2>&1 && [ -z "$(ip -o link show master "$BRIDGE" 2>/dev/null)" ] &&
        ip link delete "$BRIDGE" 2>/dev/null
    unmount_all
    remove_cgroups
    remove_netavark_chains
    firewall_off
    set -e
}

cmd_stop() {
    set_paths "$1"
    [ "$(id -u)" = 0 ] || die "must run as root"
    if [ ! -d "$P" ]; then
        log "$P does not exist; nothing to stop"
        return 0
    fi
    cmd_stop_quiet
    log "stopped"
}

on_start_exit() {
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        log "start failed, cleaning up (logs kept in $P)"
        cmd_stop_quiet
    fi
}

cmd_start() {
    set_paths "$1" create
    local t0=$SECONDS driver
    check_prereqs
    if [ -d "$P" ]; then
        log "stopping a previous engine in $P (if any) and wiping its state"
        cmd_stop_quiet
        unmount_all
        rm -rf "$P"
    fi
    mkdir -p "$P"
    trap on_start_exit EXIT
    driver=$(pick_storage_driver)
    log "storage driver: $driver"
    write_config "$driver"
    write_network
    firewall_on
    start_service
    build_images
    {
        printf 'export PODMAN_HOST=%q\n' "unix://$SOCK"
        printf 'export PODMAN_SOCK=%q\n' "$SOCK"
        printf 'export PODMAN=%q\n' "$WRAPPER"
        printf 'export PODMAN_DIR=%q\n' "$P"
    } >"$ENVF"
    trap - EXIT
    log "podman engine up in $((SECONDS - t0))s; source $ENVF"
}

[ $# -eq 2 ] || usage
case $1 in
    start) cmd_start "$2" ;;
    stop) cmd_stop "$2" ;;
    *) usage ;;
esac
