#!/usr/bin/env bash
# Three more PRIVATE Docker engines for the end-to-end tests, next to tests/services.sh's (whose
# engine functions this script sources and reuses; nothing here touches that engine):
#
#   * "docker28": Debian's docker.io 28.5.2 and containerd 2.1.9 from Debian UNSTABLE, fetched
#     with `apt-get download` through an apt configuration of its own under RGTR_CACHE (the
#     system's sources, lists and dpkg state are never used or changed), cached there (a second
#     start downloads nothing), unpacked with dpkg-deb -x into the cache and run with this
#     Debian's own runc and docker-init (tini). API on the unix socket DIR/docker28/docker.sock,
#     i.e. under RGTR_TEST_DIR, where the end-to-end tests' guard wants a DOCKER_HOST.
#   * "docker-tls": Debian's system dockerd 20.10 (the binaries tests/services.sh runs) as a
#     separate instance that listens ONLY on tcp://127.0.0.1:RGTR_TLS_DOCKER_PORT with
#     --tlsverify (no unix socket at all), with a throwaway PKI made by openssl at every start
#     (services.sh's make_tls): server certificate for IP:127.0.0.1, client certificate.
#   * "swarm": the same 28.5 binaries as "docker28" as a third engine in DIR/swarm, made a
#     single-node swarm manager on 127.0.0.1 (see "The swarm engine" below).
#
# All have their own containerd, data root, exec root, bridge, cgroup parent and the network
# policy of tests/services.sh (no iptables, no ip forwarding or masquerading, DNS 127.0.0.1,
# pulls through a dead proxy on 127.0.0.1:9), and the same images (bb, redis, nginx imported
# from busybox-static); start checks a container's port published on 127.0.0.1 answers. They
# can all run at once, and next to services.sh's engine: distinct bridges, address pools,
# sockets and cgroup parents (services.sh: rgtr0 10.213.77.1/24, Docker's default pools,
# /rgtr-test; docker28: rgtr28 10.213.78.1/24, 10.213.80.0/21, /rgtr-test28; TLS: rgtr29
# 10.213.79.1/24, 10.213.88.0/21, /rgtr-test-tls; swarm: below, /rgtr-test-swarm).
#
# The swarm engine (start-swarm):
#   * bridge rgtrsw 10.213.96.1/24, user networks from 10.213.112.0/21;
#   * docker_gwbridge made by this script BEFORE swarm init (else the swarm makes its own, on a
#     default pool, with masquerading): 10.213.97.0/24, bridge rgtrgw, no ICC, no masquerading, and
#     host_binding_ipv4=127.0.0.1, so that ports a service publishes in host mode (which
#     docker-proxy binds through docker_gwbridge) are bound on 127.0.0.1 only;
#   * docker swarm init --advertise-addr 127.0.0.1 --listen-addr 127.0.0.1:2377
#     --data-path-addr 127.0.0.1 --default-addr-pool 10.213.128.0/20 (a /24 per network:
#     ingress gets 10.213.128.0/24; if it ever came from elsewhere it is removed and made again
#     on 10.213.143.0/24); the overlay network rgtr-ov (attachable, label rgtr-test) for tests;
#   * dockerd listens on 127.0.0.1:2377 (control) and 127.0.0.1:7946 (gossip, TCP and UDP)
#     only, checked; the data path (VXLAN, udp 4789) is a kernel socket Docker binds on
#     0.0.0.0 whatever the flags (its vxlan devices have no local address), so start-swarm adds
#     an iptables INPUT rule (comment "rgtr-swarm-vxlan DIR/swarm") that drops it from anything
#     but lo; stop-swarm deletes it;
#   * ingress-published ports do NOT work here: the routing mesh needs iptables and IPVS (the
#     engine runs with --iptables=false, and this kernel has no ip_vs); services with them are
#     accepted and their tasks run, but nothing listens on the published port;
#   * dockerd runs with DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1: tasks use the local images;
#     create services with --no-resolve-image;
#   * start-swarm proves it works: a service on rgtr-ov publishing httpd in host mode on a free
#     127.0.0.1 port converges, answers, and is removed again; any failure is fatal (non-zero
#     exit, the dockerd log's end), and every swarm command has a timeout;
#   * stop-swarm removes the services, leaves the swarm, removes containers and networks, stops
#     the engine and removes what it left: the netns bind mounts under DIR/swarm/docker/exec/netns
#     (ingress_sbox, 1-NETID, lb_NETID, per container), interfaces still attached to rgtrgw or
#     rgtrsw, vx-* devices of its data path port, rgtrgw, rgtrsw, br-* bridges of its pool,
#     the iptables rule, its cgroups. It also works after a crashed start or a killed engine.
#
# Usage:
#   tests/docker28.sh fetch                  download (once) and unpack the 28.5 engine, print where
#   tests/docker28.sh start DIR              start the 28.5 engine, import the images, write DIR/docker28/env
#   tests/docker28.sh stop DIR               remove its containers, stop it, clean up (idempotent)
#   tests/docker28.sh stop-docker DIR        stop the 28.5 engine (dockerd + containerd), state kept
#   tests/docker28.sh start-docker DIR       start it again with the saved command
#   tests/docker28.sh restart-docker DIR     stop-docker + start-docker
#   tests/docker28.sh capture DIR [OUT]      capture events-engine-28.5.raw and inspect-engine-28.5.json
#                                            from the running 28.5 engine into OUT (default tests/data)
#   tests/docker28.sh start-tls DIR          start the TLS engine, write DIR/docker-tls/env
#   tests/docker28.sh stop-tls DIR           remove its containers, stop it, clean up (idempotent)
#   tests/docker28.sh stop-tls-docker DIR    stop the TLS engine, state and certificates kept
#   tests/docker28.sh start-tls-docker DIR   start it again (same port, same certificates)
#   tests/docker28.sh restart-tls-docker DIR stop-tls-docker + start-tls-docker
#   tests/docker28.sh start-swarm DIR        start the swarm engine (single-node manager), write DIR/swarm/env
#   tests/docker28.sh stop-swarm DIR         leave the swarm, stop it, clean up (idempotent, also after a crash)
#   tests/docker28.sh capture-swarm DIR [OUT]  capture *-swarm-28.5.* (and *-noswarm-28.5.*) into OUT
#                                            (default tests/data); see cmd_capture_swarm
#
# Re-capturing the 28.5 test data (as root), then the fuzz seeds:
#     d=$(mktemp -d /tmp/rgtr.XXXXXX) && tests/docker28.sh start "$d" &&
#         tests/docker28.sh capture "$d"; tests/docker28.sh stop "$d"; rm -rf "$d"
#     python3 tests/fuzz/seeds/make_seeds.py
# (capture names the files after the engine's version, events-engine-28.5.raw and
# inspect-engine-28.5.json; see cmd_capture for what the containers do.) The swarm test data:
#     d=$(mktemp -d /tmp/rgtr.XXXXXX) && tests/docker28.sh start-swarm "$d" &&
#         tests/docker28.sh start "$d" && tests/docker28.sh capture-swarm "$d"
#     tests/docker28.sh stop-swarm "$d"; tests/docker28.sh stop "$d"; rm -rf "$d"
# (see cmd_capture_swarm for the services and what each file holds.)
#
# DIR may be at most 49 characters long (services.sh allows 60 for an engine's directory,
# here DIR/docker28, DIR/docker-tls and DIR/swarm; unix socket paths are limited to 108 bytes).
#
# DIR/docker28/env exports DOCKER28_HOST (unix://DIR/docker28/docker.sock), DOCKER28_SOCK,
# DOCKER28_DIR and DOCKER28_VERSION (the engine's version string).
# DIR/docker-tls/env exports
#   RGTR_TLS_DOCKER_HOST      tcp://127.0.0.1:PORT
#   RGTR_TLS_DOCKER_CERTS     dir with ca.pem, cert.pem, key.pem (the docker client layout:
#                             DOCKER_CERT_PATH=$RGTR_TLS_DOCKER_CERTS DOCKER_TLS_VERIFY=1 works)
#   RGTR_TLS_DOCKER_BADCA     dir with ca.pem of ANOTHER CA (cannot verify the engine) and the
#                             good cert.pem/key.pem
#   RGTR_TLS_DOCKER_NOCLIENT  dir with ca.pem only (the engine refuses a client without a
#                             certificate)
#   RGTR_TLS_DOCKER_DIR       the engine's directory (DIR/docker-tls)
# All keys are EC P-256 in PKCS#8 PEM, as services.sh's make_tls writes them.
# DIR/swarm/env exports
#   SWARM_DOCKER_HOST   unix://DIR/swarm/docker.sock
#   SWARM_DOCKER_SOCK   that socket's path
#   SWARM_DIR           the engine's directory (DIR/swarm)
#   SWARM_NODE_ID       the manager's node ID
#   SWARM_NODE_ADDR     its address in the swarm (127.0.0.1: /nodes/{id} Status.Addr)
#   SWARM_VERSION       the engine's version string
#   SWARM_OVERLAY       the attachable overlay network for tests (rgtr-ov)
#
# Environment (all optional):
#   RGTR_CACHE                 cache root (default /var/cache/rgtr): RGTR_CACHE/apt holds the
#                              apt configuration, lists and the downloaded .debs,
#                              RGTR_CACHE/docker28 the unpacked trees
#   RGTR_DOCKER28_VERSION      docker.io upstream version wanted (default 28.5.2)
#   RGTR_CONTAINERD2_VERSION   containerd upstream version wanted (default 2.1.9); when unstable
#                              no longer has a wanted version, its current one is used with a
#                              loud WARNING
#   RGTR_DEBIAN_MIRROR         Debian archive URI (default: the one the system's apt uses)
#   RGTR_DOCKER28_BRIDGE       bridge of the 28.5 engine (default rgtr28)
#   RGTR_DOCKER28_BRIDGE_CIDR  its address (default 10.213.78.1/24)
#   RGTR_DOCKER28_POOL         pool of user-defined networks (default 10.213.80.0/21, /24 each)
#   RGTR_TLS_DOCKER_PORT       TLS engine port on 127.0.0.1 (default 12376)
#   RGTR_TLS_BRIDGE            bridge of the TLS engine (default rgtr29)
#   RGTR_TLS_BRIDGE_CIDR       its address (default 10.213.79.1/24)
#   RGTR_TLS_POOL              pool of its user-defined networks (default 10.213.88.0/21)
#   RGTR_SWARM_BRIDGE          bridge of the swarm engine (default rgtrsw)
#   RGTR_SWARM_BRIDGE_CIDR     its address (default 10.213.96.1/24)
#   RGTR_SWARM_POOL            pool of its local user-defined networks (default 10.213.112.0/21)
#   RGTR_SWARM_GW_BRIDGE       bridge of its docker_gwbridge (default rgtrgw)
#   RGTR_SWARM_GW_SUBNET       docker_gwbridge's subnet (default 10.213.97.0/24)
#   RGTR_SWARM_ADDR_POOL       the swarm's pool of overlay networks (default 10.213.128.0/20)
#   RGTR_SWARM_INGRESS_SUBNET  ingress's subnet when it must be made again (default 10.213.143.0/24)
#   RGTR_SWARM_INGRESS_RECREATE=1  always make ingress again on RGTR_SWARM_INGRESS_SUBNET
#   RGTR_SWARM_PORT            swarm control port on 127.0.0.1 (default 2377; gossip is always 7946)
#   RGTR_SWARM_DATA_PORT       VXLAN data path port (default 4789)
#   RGTR_SWARM_OVERLAY         name of the test overlay network (default rgtr-ov)
#   RGTR_SWARM_PROBE_PORT      127.0.0.1 port of start-swarm's probe (default: a free one)
#   RGTR_STORAGE_DRIVER, RGTR_BUSYBOX   as for tests/services.sh
#
# What Docker 28.5 + containerd 2.1 need beyond services.sh's 20.10 setup (found by trying on
# Debian bookworm, cgroup v1, no systemd):
#   * --ip6tables=false: on by default since Docker 27 and NOT implied by --iptables=false;
#     without it dockerd 28 creates DOCKER, DOCKER-USER, DOCKER-FORWARD, DOCKER-CT, ... chains
#     in the host's ip6tables (filter and nat) and hooks them into FORWARD/PREROUTING/OUTPUT.
#   * --userland-proxy-path to the package's own docker-proxy: 28 hands the proxy the socket
#     it bound (-use-listen-fd), which 20.10's proxy does not understand ("failed to start
#     docker-proxy, check that the current version is in your $PATH").
#   * containerd runs with a PATH that starts with the unpacked usr/bin: it looks its shim up
#     in PATH first and would otherwise run the system's containerd-shim-runc-v2 1.6.
#   * a version 3 containerd config (a version 2 one is still accepted, migrated with a
#     warning) that also disables 2.x's split CRI plugins (cri.v1.images, cri.v1.runtime load
#     even with grpc.v1.cri off) and NRI (on by default in 2.x; with CRI off it does not open
#     its system-wide /var/run/nri/nri.sock, but nothing of it is wanted).
#   * --feature containerd-snapshotter=false: 28's default anyway (a fresh data root gets
#     overlay2), pinned so that the GraphDriver data stays like 20.10's whatever the default.
#   * --default-address-pool: user-defined networks get /24s from the engine's own 10.x pool
#     (services.sh's engine takes Docker's default 172.17.0.0/16.. pools).
# containerd 2.1 still puts shim sockets in /run/containerd/s like 1.6 (services.sh's
# write_engine_config, used here, already deals with that directory).

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(cd "$HERE/.." && pwd -P)

# tests/services.sh, sourced: its engine, image, cleanup and TLS functions and lib.sh (it
# returns before its command dispatch). Its settings are replaced below.
# shellcheck source=tests/services.sh
source "$HERE/services.sh"
TAG=docker28.sh

usage() {
    sed -n 's/^#   \(tests\/docker28\.sh .*\)/  \1/p' "${BASH_SOURCE[0]}" >&2
    exit 2
}

CACHE=${RGTR_CACHE:-/var/cache/rgtr}
APT_DIR=$CACHE/apt
DEB_DIR=$APT_DIR/debs
UNPACK_DIR=$CACHE/docker28
DOCKER28_WANT=${RGTR_DOCKER28_VERSION:-28.5.2}
CONTAINERD2_WANT=${RGTR_CONTAINERD2_VERSION:-2.1.9}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
TLS_PORT=${RGTR_TLS_DOCKER_PORT:-12376}

# select_engine docker28|tls BASE [create]: the paths (services.sh's set_paths on BASE's
# subdirectory), bridge and cgroup parent of one of the two engines, and for the TLS engine a
# docker_ping and dk that speak TLS to 127.0.0.1:TLS_PORT.
select_engine() {
    local base=$2
    [ -n "$base" ] || usage
    if [ -n "${3:-}" ]; then mkdir -p "$base"; fi
    [ -d "$base" ] || die "$base does not exist"
    base=$(cd "$base" && pwd -P)
    ENGINE=$1
    case $ENGINE in
        docker28)
            set_paths "$base/docker28"
            BRIDGE=${RGTR_DOCKER28_BRIDGE:-rgtr28}
            BRIDGE_CIDR=${RGTR_DOCKER28_BRIDGE_CIDR:-10.213.78.1/24}
            POOL=${RGTR_DOCKER28_POOL:-10.213.80.0/21}
            CGROUP_PARENT=/rgtr-test28
            ;;
        tls)
            set_paths "$base/docker-tls"
            BRIDGE=${RGTR_TLS_BRIDGE:-rgtr29}
            BRIDGE_CIDR=${RGTR_TLS_BRIDGE_CIDR:-10.213.79.1/24}
            POOL=${RGTR_TLS_POOL:-10.213.88.0/21}
            CGROUP_PARENT=/rgtr-test-tls
            CERTS=$DIR/certs
            if [ -s "$DIR/tls-port" ]; then TLS_PORT=$(cat "$DIR/tls-port"); fi
            docker_ping() {
                [ -s "$CERTS/key.pem" ] &&
                    [ "$(curl_local --max-time 3 --cacert "$CERTS/ca.pem" --cert "$CERTS/cert.pem" \
                        --key "$CERTS/key.pem" "https://127.0.0.1:$TLS_PORT/_ping" 2>/dev/null)" = OK ]
            }
            dk() {
                docker --tlsverify --tlscacert "$CERTS/ca.pem" --tlscert "$CERTS/cert.pem" \
                    --tlskey "$CERTS/key.pem" -H "tcp://127.0.0.1:$TLS_PORT" "$@"
            }
            ;;
        swarm)
            set_paths "$base/swarm"
            swarm_settings
            # What start-swarm chose (stop-swarm must not depend on the caller's environment
            # being the same as start-swarm's).
            if [ -s "$DIR/swarm.conf" ]; then
                # shellcheck disable=SC1091
                source "$DIR/swarm.conf"
            fi
            ;;
        *) die "unknown engine $ENGINE" ;;
    esac
    ENVF=$DIR/env
}

# swarm_settings: the swarm engine's settings from the environment (see the header).
swarm_settings() {
    BRIDGE=${RGTR_SWARM_BRIDGE:-rgtrsw}
    BRIDGE_CIDR=${RGTR_SWARM_BRIDGE_CIDR:-10.213.96.1/24}
    POOL=${RGTR_SWARM_POOL:-10.213.112.0/21}
    CGROUP_PARENT=/rgtr-test-swarm
    GW_BRIDGE=${RGTR_SWARM_GW_BRIDGE:-rgtrgw}
    GW_SUBNET=${RGTR_SWARM_GW_SUBNET:-10.213.97.0/24}
    SWARM_POOL=${RGTR_SWARM_ADDR_POOL:-10.213.128.0/20}
    INGRESS_SUBNET=${RGTR_SWARM_INGRESS_SUBNET:-10.213.143.0/24}
    SWARM_PORT=${RGTR_SWARM_PORT:-2377}
    DATA_PORT=${RGTR_SWARM_DATA_PORT:-4789}
    OVERLAY=${RGTR_SWARM_OVERLAY:-rgtr-ov}
}

# ------------------------------------------------------- fetch (28.5) --

apt_cmd() { APT_CONFIG=$APT_DIR/apt.conf "$@"; }

# The Debian archive the system's apt uses (its first Debian, non-security Packages index).
debian_mirror() {
    local m
    if [ -n "${RGTR_DEBIAN_MIRROR:-}" ]; then
        printf '%s\n' "${RGTR_DEBIAN_MIRROR%/}"
        return
    fi
    # shellcheck disable=SC2016 # apt's own $(FIELD) syntax
    m=$(apt-get indextargets --format '$(SITE) $(LABEL)' 'Identifier: Packages' 2>/dev/null |
        awk '$2 == "Debian" {print $1; exit}') || true
    printf '%s\n' "${m:-http://deb.debian.org/debian}"
}

# An apt configuration of our own: unstable only, its own lists, state, cache and an empty
# dpkg status, no preferences; the system's apt.conf.d (proxies, ...) still applies.
write_apt_config() {
    local mirror
    mirror=$(debian_mirror)
    mkdir -p "$APT_DIR/state/lists/partial" "$APT_DIR/cache/archives/partial" "$DEB_DIR"
    [ -e "$APT_DIR/state/status" ] || : >"$APT_DIR/state/status"
    [ -s "$KEYRING" ] || die "$KEYRING not found (Debian package debian-archive-keyring)"
    printf 'deb [signed-by=%s target=Packages] %s unstable main\n' "$KEYRING" "$mirror" \
        >"$APT_DIR/sources.list"
    cat >"$APT_DIR/apt.conf" <<EOF
Dir::Etc::SourceList "$APT_DIR/sources.list";
Dir::Etc::SourceParts "/dev/null";
Dir::Etc::Preferences "/dev/null";
Dir::Etc::PreferencesParts "/dev/null";
Dir::State "$APT_DIR/state";
Dir::State::Lists "$APT_DIR/state/lists";
Dir::State::status "$APT_DIR/state/status";
Dir::Cache "$APT_DIR/cache";
Dir::Cache::pkgcache "pkgcache.bin";
Dir::Cache::srcpkgcache "srcpkgcache.bin";
Acquire::Languages "none";
APT::Sandbox::User "root";
EOF
    log "apt configuration $APT_DIR/apt.conf: $mirror unstable main"
}

# want_re WANT: a regex for Debian versions of upstream version WANT (28.5.2 matches
# 28.5.2+dfsg4-5 and 28.5.2-1, not 28.5.20).
want_re() { printf '^([0-9]+:)?%s([+~-].*)?$' "${1//./\\.}"; }

# cached_deb PKG WANT: the newest cached PKG .deb of version WANT, else the one a former
# fallback chose for WANT (DEB_DIR/PKG-WANT.fallback names it).
cached_deb() {
    local pkg=$1 want=$2 f v best="" bestv=""
    for f in "$DEB_DIR/${pkg}_"*"_$ARCH.deb"; do
        [ -f "$f" ] || continue
        v=$(dpkg-deb -f "$f" Version 2>/dev/null) || continue
        [[ $v =~ $(want_re "$want") ]] || continue
        if [ -z "$best" ] || dpkg --compare-versions "$v" gt "$bestv"; then
            best=$f bestv=$v
        fi
    done
    if [ -z "$best" ] && [ -s "$DEB_DIR/$pkg-$want.fallback" ]; then
        f=$DEB_DIR/$(cat "$DEB_DIR/$pkg-$want.fallback")
        if [ -f "$f" ]; then
            warn_banner "$pkg $want is not cached; using the fallback $(basename "$f") chosen earlier"
            best=$f
        fi
    fi
    [ -n "$best" ] && printf '%s\n' "$best"
}

warn_banner() {
    local bar='!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!'
    log "$bar"
    log "!!! WARNING: $*"
    log "$bar"
}

# resolve_version PKG WANT: the version of PKG in unstable to download: the newest matching
# WANT, else unstable's candidate (loudly).
resolve_version() {
    local pkg=$1 want=$2 all v cand
    all=$(apt_cmd apt-cache madison "$pkg" 2>/dev/null | awk -F'|' '{gsub(/ /, "", $2); print $2}')
    [ -n "$all" ] || die "unstable has no package $pkg (apt-cache madison $pkg, config $APT_DIR/apt.conf)"
    v=$(grep -E "$(want_re "$want")" <<<"$all" | sort -V | tail -n 1 || true)
    if [ -n "$v" ]; then
        printf '%s\n' "$v"
        return
    fi
    cand=$(apt_cmd apt-cache policy "$pkg" | awk '/Candidate:/ {print $2}')
    if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then die "no installable $pkg in unstable"; fi
    warn_banner "unstable no longer has $pkg $want (it has: $(paste -sd' ' <<<"$all")); USING $pkg $cand INSTEAD"
    printf '%s\n' "$cand"
}

# download PKG VERSION: apt-get download into DEB_DIR (nothing if the file is there); prints it.
download() {
    local pkg=$1 ver=$2 f
    f=$DEB_DIR/${pkg}_${ver//:/%3a}_$ARCH.deb
    if [ ! -f "$f" ]; then
        log "downloading $pkg=$ver from unstable"
        (cd "$DEB_DIR" && apt_cmd apt-get download -q "$pkg=$ver" >&2) ||
            die "apt-get download $pkg=$ver failed"
    fi
    [ -f "$f" ] || die "apt-get download $pkg=$ver did not write $f"
    printf '%s\n' "$f"
}

# fetch_engine28: ROOT28, the unpacked docker.io + containerd of the wanted versions, downloaded
# and unpacked only if the cache does not have them yet.
fetch_engine28() {
    local deb_d deb_c lockfd dv cv
    need_cmd apt-get
    need_cmd dpkg-deb "Debian package dpkg"
    need_cmd flock "Debian package util-linux"
    ARCH=$(dpkg --print-architecture)
    mkdir -p "$DEB_DIR" "$UNPACK_DIR"
    exec {lockfd}>"$CACHE/.lock"
    flock -w 900 "$lockfd" || die "another fetch holds $CACHE/.lock"

    deb_d=$(cached_deb docker.io "$DOCKER28_WANT" || true)
    deb_c=$(cached_deb containerd "$CONTAINERD2_WANT" || true)
    if [ -z "$deb_d" ] || [ -z "$deb_c" ]; then
        local t0=$SECONDS
        write_apt_config
        log "apt-get update (unstable, into $APT_DIR)"
        apt_cmd apt-get update -q --error-on=any >"$APT_DIR/update.log" 2>&1 || {
            log_tail "$APT_DIR/update.log"
            die "apt-get update of unstable failed (log: $APT_DIR/update.log)"
        }
        dv=$(resolve_version docker.io "$DOCKER28_WANT")
        cv=$(resolve_version containerd "$CONTAINERD2_WANT")
        deb_d=$(download docker.io "$dv")
        deb_c=$(download containerd "$cv")
        [[ $dv =~ $(want_re "$DOCKER28_WANT") ]] ||
            basename "$deb_d" >"$DEB_DIR/docker.io-$DOCKER28_WANT.fallback"
        [[ $cv =~ $(want_re "$CONTAINERD2_WANT") ]] ||
            basename "$deb_c" >"$DEB_DIR/containerd-$CONTAINERD2_WANT.fallback"
        log "fetched in $((SECONDS - t0))s: $(basename "$deb_d") $(basename "$deb_c")"
    else
        log "cached: $(basename "$deb_d") $(basename "$deb_c") (no download)"
    fi
    dv=$(dpkg-deb -f "$deb_d" Version)
    cv=$(dpkg-deb -f "$deb_c" Version)
    ROOT28=$UNPACK_DIR/docker.io_${dv//:/%3a}+containerd_${cv//:/%3a}
    if [ ! -e "$ROOT28/.complete" ]; then
        log "unpacking into $ROOT28"
        rm -rf "$ROOT28"
        dpkg-deb -x "$deb_d" "$ROOT28" || die "cannot unpack $deb_d"
        dpkg-deb -x "$deb_c" "$ROOT28" || die "cannot unpack $deb_c"
        printf 'docker.io %s\ncontainerd %s\n' "$dv" "$cv" >"$ROOT28/.complete"
    fi
    exec {lockfd}>&-
    local b
    for b in usr/sbin/dockerd usr/sbin/docker-proxy usr/bin/containerd usr/bin/containerd-shim-runc-v2; do
        [ -x "$ROOT28/$b" ] || die "$ROOT28/$b missing (unpacked $deb_d / $deb_c)"
    done
    "$ROOT28/usr/sbin/dockerd" --version >/dev/null 2>&1 ||
        die "$ROOT28/usr/sbin/dockerd does not run here: $(ldd "$ROOT28/usr/sbin/dockerd" 2>&1 | grep -i 'not found' | tr '\n' ' ')"
    "$ROOT28/usr/bin/containerd" --version >/dev/null 2>&1 ||
        die "$ROOT28/usr/bin/containerd does not run here"
    DOCKER28_DEB_VERSIONS="docker.io $dv, containerd $cv"
}

# ------------------------------------------------------ engine config --

# write_engine28_config DRIVER: services.sh's engine (write_engine_config, resolving dockerd
# and containerd from the unpacked tree), then what 28.5 and containerd 2.1 need (see the
# header).
write_engine28_config() {
    local driver=$1 runc_dir sane_path
    runc_dir=$(dirname "$(command -v runc)")
    sane_path=$ROOT28/usr/bin:$runc_dir:/usr/sbin:/usr/bin:/sbin:/bin
    PATH=$ROOT28/usr/sbin:$ROOT28/usr/bin:$PATH write_engine_config "$driver"

    cat >"$CTRD_DIR/config.toml" <<EOF
version = 3
root = "$CTRD_DIR/root"
state = "$CTRD_DIR/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime", "io.containerd.nri.v1.nri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.blockfile", "io.containerd.snapshotter.v1.erofs"]
[grpc]
  address = "$CTRD_SOCK"
[ttrpc]
  address = ""
[debug]
  address = ""
[metrics]
  address = ""
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$CTRD_DIR/opt"
EOF
    save_cmd "$CTRD_CMD" env "PATH=$sane_path" "$ROOT28/usr/bin/containerd" --config "$CTRD_DIR/config.toml"

    local cmd
    eval "cmd=($(cat "$DOCKERD_CMD"))"
    [[ ${cmd[0]} = env && " ${cmd[*]} " == *" $ROOT28/usr/sbin/dockerd "* ]] ||
        die "the saved dockerd command does not run env ... $ROOT28/usr/sbin/dockerd: ${cmd[*]}"
    # The same PATH as containerd (dockerd runs `runc --version` for `docker info`).
    save_cmd "$DOCKERD_CMD" env "PATH=$sane_path" "${cmd[@]:1}" \
        --ip6tables=false \
        --feature containerd-snapshotter=false \
        --default-address-pool "base=$POOL,size=24"
}

# write_swarm_engine_config DRIVER: the 28.5 engine (write_engine28_config), plus
# DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 in dockerd's environment: the swarm executor then
# uses a task's image as it is found locally instead of first trying to pull it (which the
# dead proxy would fail, logged as an error, before it falls back to the local image anyway).
write_swarm_engine_config() {
    local driver=$1 cmd
    write_engine28_config "$driver"
    eval "cmd=($(cat "$DOCKERD_CMD"))"
    [ "${cmd[0]}" = env ] || die "the saved dockerd command does not start with env: ${cmd[*]}"
    save_cmd "$DOCKERD_CMD" env DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 "${cmd[@]:1}"
}

# write_tls_engine_config DRIVER: services.sh's engine as it is (system dockerd 20.10), with
# its `-H unix://SOCK` replaced by the TLS-only TCP listener.
write_tls_engine_config() {
    local driver=$1 cmd out=() i swapped=""
    write_engine_config "$driver"
    eval "cmd=($(cat "$DOCKERD_CMD"))"
    for ((i = 0; i < ${#cmd[@]}; i++)); do
        if [ "${cmd[i]}" = -H ] && [ "${cmd[i + 1]:-}" = "unix://$SOCK" ]; then
            out+=(-H "tcp://127.0.0.1:$TLS_PORT" --tlsverify
                --tlscacert "$TLS_DIR/ca.pem" --tlscert "$TLS_DIR/server.pem" --tlskey "$TLS_DIR/server-key.pem")
            i=$((i + 1))
            swapped=1
        else
            out+=("${cmd[i]}")
        fi
    done
    [ -n "$swapped" ] || die "no '-H unix://$SOCK' in the saved dockerd command: ${cmd[*]}"
    save_cmd "$DOCKERD_CMD" "${out[@]}" --default-address-pool "base=$POOL,size=24"
    printf '%s\n' "$TLS_PORT" >"$DIR/tls-port"
}

# The docker client directories of the env file, from services.sh's PKI in TLS_DIR.
write_client_dirs() {
    rm -rf "$DIR/certs" "$DIR/badca" "$DIR/noclient"
    mkdir -p "$DIR/certs" "$DIR/badca" "$DIR/noclient"
    cp "$TLS_DIR/ca.pem" "$DIR/certs/ca.pem"
    cp "$TLS_DIR/client.pem" "$DIR/certs/cert.pem"
    cp "$TLS_DIR/client-key.pem" "$DIR/certs/key.pem"
    cp "$TLS_DIR/other-ca.pem" "$DIR/badca/ca.pem"
    cp "$TLS_DIR/client.pem" "$DIR/badca/cert.pem"
    cp "$TLS_DIR/client-key.pem" "$DIR/badca/key.pem"
    cp "$TLS_DIR/ca.pem" "$DIR/noclient/ca.pem"
    chmod 0600 "$DIR/certs/key.pem" "$DIR/badca/key.pem"
}

# The TLS engine serves nothing but TLS with a client certificate signed by the test CA.
check_tls_refusals() {
    local out base="127.0.0.1:$TLS_PORT"
    out=$(curl_local --max-time 3 "http://$base/_ping" 2>&1 || true)
    [ "$out" != OK ] || die "the TLS engine answered plain HTTP on $base"
    if curl_local -f --max-time 3 --cacert "$DIR/noclient/ca.pem" "https://$base/_ping" >/dev/null 2>&1; then
        die "the TLS engine answered a client without a certificate"
    fi
    if curl_local -f --max-time 3 --cacert "$DIR/badca/ca.pem" --cert "$DIR/badca/cert.pem" \
        --key "$DIR/badca/key.pem" "https://$base/_ping" >/dev/null 2>&1; then
        die "a client trusting another CA accepted the TLS engine's certificate"
    fi
    # Its only listening unix sockets are dockerd's internal ones below the exec root
    # (libnetwork, metrics plugins); no API socket. (20.10 also holds an unbound datagram
    # socket, which ss lists as @NNNNN.)
    local pid others
    pid=$(pidfile_pid "$DOCKERD_PIDFILE") || die "dockerd is not running"
    others=$(ss -Hxlp 2>/dev/null | awk -v p="pid=$pid," '$1 != "u_dgr" && index($0, p) {print $5}' |
        grep -vF "$DOCKER_DIR/exec/" || true)
    if [ -e "$SOCK" ] || [ -n "$others" ]; then
        die "the TLS engine listens on unix sockets: $SOCK $others"
    fi
    log "TLS engine refuses plain HTTP, clients without a certificate, and is not trusted under another CA"
}

# ------------------------------------------------------------- swarm --

# sdk ARGS...: the docker CLI on the engine of DIR, never running longer than SDK_TIMEOUT
# seconds (a swarm command waiting on a stuck manager must fail, not hang the tests).
SDK_TIMEOUT=90
sdk() { timeout -k 5 "$SDK_TIMEOUT" docker -H "unix://$SOCK" "$@"; }

# write_swarm_conf: the swarm engine's settings, for stop-swarm and capture-swarm.
write_swarm_conf() {
    local v
    for v in BRIDGE BRIDGE_CIDR POOL GW_BRIDGE GW_SUBNET SWARM_POOL INGRESS_SUBNET SWARM_PORT \
        DATA_PORT OVERLAY; do
        printf '%s=%q\n' "$v" "${!v}"
    done >"$DIR/swarm.conf"
}

# vxlan_drop_rule -I|-D|-C: insert (once), delete (every copy) or check the iptables INPUT
# rule that drops the swarm's VXLAN data path (udp DATA_PORT) arriving on anything but lo.
# Docker makes its overlay networks' vxlan devices without a local address, so the kernel's
# vxlan socket listens on 0.0.0.0:DATA_PORT (no process owns it, --data-path-addr does not
# change that); with this rule only loopback traffic reaches it.
vxlan_drop_rule() {
    local rule=(-p udp --dport "$DATA_PORT" ! -i lo -m comment --comment "rgtr-swarm-vxlan $DIR" -j DROP)
    case $1 in
        -I)
            iptables -w -C INPUT "${rule[@]}" 2>/dev/null ||
                iptables -w -I INPUT 1 "${rule[@]}" ||
                die "cannot add the iptables INPUT rule that keeps udp port $DATA_PORT (VXLAN) loopback-only"
            ;;
        -D)
            command -v iptables >/dev/null 2>&1 || return 0
            while iptables -w -D INPUT "${rule[@]}" 2>/dev/null; do :; done
            ;;
        -C) iptables -w -C INPUT "${rule[@]}" 2>/dev/null ;;
    esac
}

# swarm_leave: remove every service, leave the swarm (best effort, for the stop).
swarm_leave() {
    local state ids
    state=$(sdk info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null)
    case $state in
        "" | inactive) return 0 ;;
    esac
    if [ "$state" = active ]; then
        ids=$(sdk service ls -q 2>/dev/null)
        if [ -n "$ids" ]; then
            log "removing services"
            # shellcheck disable=SC2086
            sdk service rm $ids >/dev/null 2>&1
        fi
    fi
    log "leaving the swarm (node state $state)"
    sdk swarm leave --force >/dev/null 2>&1 || log "WARNING: docker swarm leave --force failed"
}

# remove_swarm_links: what of the swarm engine a stop (or a crash) can leave in the host's
# network namespace once its containers are gone and its namespaces unmounted: interfaces
# still attached to its bridges, vxlan devices (Docker makes them here as vx-VNI-NETID,
# then moves them into a network's namespace) of its data path port, the docker_gwbridge
# bridge.
remove_swarm_links() {
    local br l
    for br in "$GW_BRIDGE" "$BRIDGE"; do
        ip link show "$br" >/dev/null 2>&1 || continue
        while read -r l; do
            [ -n "$l" ] || continue
            log "deleting leftover interface $l (attached to $br)"
            # (one whose peer's namespace is going away can vanish on its own meanwhile)
            ip link del "$l" 2>/dev/null || ! ip link show "$l" >/dev/null 2>&1 ||
                log "WARNING: cannot delete $l"
        done < <(ip -o link show master "$br" 2>/dev/null | awk -F': ' '{sub(/@.*/, "", $2); print $2}')
    done
    while read -r l; do
        [ -n "$l" ] || continue
        log "deleting leftover vxlan device $l"
        ip link del "$l" 2>/dev/null || log "WARNING: cannot delete $l"
    done < <(ip -d -o link show type vxlan 2>/dev/null | awk -v p="$DATA_PORT" '{
        n = $2; sub(/:$/, "", n); sub(/@.*/, "", n)
        if (n ~ /^vx-/ && index($0, " dstport " p " ")) print n }')
    if ip link show "$GW_BRIDGE" >/dev/null 2>&1; then
        log "deleting bridge $GW_BRIDGE (docker_gwbridge)"
        ip link del "$GW_BRIDGE" || log "WARNING: cannot delete bridge $GW_BRIDGE"
    fi
}

# free_port: a TCP/UDP port nothing listens on (RGTR_SWARM_PROBE_PORT if set).
free_port() {
    local p i
    if [ -n "${RGTR_SWARM_PROBE_PORT:-}" ]; then
        ports_free "RGTR_SWARM_PROBE_PORT" "$RGTR_SWARM_PROBE_PORT"
        printf '%s\n' "$RGTR_SWARM_PROBE_PORT"
        return
    fi
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + RANDOM % 10000))
        if ! port_in_use "$p"; then
            printf '%s\n' "$p"
            return
        fi
    done
    die "no free port found in 20000-29999"
}

# swarm_fail MESSAGE: the dockerd log's end, then die.
swarm_fail() {
    log_tail "$DOCKERD_LOG"
    die "$*"
}

# ensure_ingress: the ingress network's subnet must come from SWARM_POOL (else, or with
# RGTR_SWARM_INGRESS_RECREATE=1, it is removed and made again on INGRESS_SUBNET).
ensure_ingress() {
    local subnet i
    subnet=$(sdk network inspect ingress --format '{{range .IPAM.Config}}{{.Subnet}} {{end}}' 2>/dev/null) ||
        swarm_fail "the swarm has no ingress network"
    subnet=${subnet%% *}
    if [ -n "$subnet" ] && ip_in_cidr "${subnet%/*}" "$SWARM_POOL" &&
        [ "${subnet#*/}" -ge "${SWARM_POOL#*/}" ] && [ "${RGTR_SWARM_INGRESS_RECREATE:-0}" != 1 ]; then
        log "ingress network on $subnet (from $SWARM_POOL)"
        return
    fi
    log "ingress network on '$subnet': removing it, making it again on $INGRESS_SUBNET"
    printf 'y\n' | sdk network rm ingress >/dev/null || swarm_fail "cannot remove the ingress network"
    for ((i = 0; i < 200; i++)); do
        sdk network inspect ingress >/dev/null 2>&1 || break
        sleep 0.1
    done
    sdk network create --driver overlay --ingress --subnet "$INGRESS_SUBNET" ingress >/dev/null ||
        swarm_fail "cannot create the ingress network on $INGRESS_SUBNET"
    subnet=$(sdk network inspect ingress --format '{{range .IPAM.Config}}{{.Subnet}} {{end}}')
    [ "${subnet%% *}" = "$INGRESS_SUBNET" ] ||
        swarm_fail "the new ingress network is on '$subnet', not $INGRESS_SUBNET"
    log "ingress network on $INGRESS_SUBNET"
}

# check_swarm_listeners: dockerd listens (TCP or UDP) on 127.0.0.1 only: the swarm's control
# port and its gossip port 7946 (TCP and UDP) there, and the kernel's vxlan socket (the
# data path) on 127.0.0.1 or, as it is, on 0.0.0.0 behind vxlan_drop_rule.
check_swarm_listeners() {
    local pid all bad w data
    pid=$(pidfile_pid "$DOCKERD_PIDFILE") || swarm_fail "dockerd is not running"
    all=$(ss -Htulnp 2>/dev/null)
    bad=$(awk -v p="pid=$pid," 'index($0, p) && $5 !~ /^127\.0\.0\.1:/' <<<"$all")
    [ -z "$bad" ] || swarm_fail "dockerd listens on more than 127.0.0.1: $bad"
    for w in "tcp 127.0.0.1:$SWARM_PORT" "tcp 127.0.0.1:7946" "udp 127.0.0.1:7946"; do
        awk -v p="pid=$pid," -v n="${w%% *}" -v a="${w#* }" '$1 == n && $5 == a && index($0, p)' \
            <<<"$all" | grep -q . || swarm_fail "dockerd does not listen on $w"
    done
    data=$(awk -v s=":$DATA_PORT" '$1 == "udp" && substr($5, length($5) - length(s) + 1) == s {print $5}' <<<"$all" |
        sort -u | paste -sd' ')
    [ -n "$data" ] || swarm_fail "no socket on the data path port udp $DATA_PORT"
    if [ "$data" != "127.0.0.1:$DATA_PORT" ]; then
        vxlan_drop_rule -C || swarm_fail "the data path socket is on $data and the iptables rule that drops it is missing"
        log "control 127.0.0.1:$SWARM_PORT, gossip 127.0.0.1:7946; data path: the kernel's vxlan socket on $data, reachable from lo only (iptables INPUT rule 'rgtr-swarm-vxlan')"
    else
        log "control 127.0.0.1:$SWARM_PORT, gossip 127.0.0.1:7946, data path 127.0.0.1:$DATA_PORT"
    fi
}

# swarm_probe: a replicated service on the test overlay with a port published in host mode
# (docker_gwbridge binds it on 127.0.0.1 only) answers on 127.0.0.1, then goes away again.
swarm_probe() {
    local port body="" i bad
    port=$(free_port)
    log "probe: service rgtr-probe (httpd) on $OVERLAY, published in host mode on 127.0.0.1:$port"
    # (--init: httpd as PID 1 would ignore the SIGTERM of its removal)
    if ! sdk service create --detach=false --quiet --no-resolve-image --stop-grace-period 1s \
        --init --update-monitor 1s --name rgtr-probe --network "$OVERLAY" \
        --publish "mode=host,published=$port,target=80" bb httpd -f -p 80 -h /tmp >"$DIR/probe.log" 2>&1; then
        log_tail "$DIR/probe.log"
        sdk service ps --no-trunc rgtr-probe >&2 || true
        swarm_fail "the probe service did not converge"
    fi
    for ((i = 0; i < 100; i++)); do
        body=$(curl_local -f --max-time 2 "http://127.0.0.1:$port/" 2>/dev/null) && break
        sleep 0.1
    done
    [ "$body" = ok ] || swarm_fail "the probe service does not answer on http://127.0.0.1:$port/"
    # (the vxlan socket exists once a network's namespace does, so with a task running)
    check_swarm_listeners
    bad=$(ss -Htuln "( sport = :$port )" 2>/dev/null | awk '$5 !~ /^127\.0\.0\.1:/')
    [ -z "$bad" ] || swarm_fail "the probe's host-mode port is bound beyond 127.0.0.1: $bad"
    sdk service rm rgtr-probe >/dev/null || swarm_fail "cannot remove the probe service"
    for ((i = 0; i < 300; i++)); do
        [ -z "$(sdk ps -aq --filter label=com.docker.swarm.service.name=rgtr-probe 2>/dev/null)" ] && break
        sleep 0.1
    done
    [ -z "$(sdk ps -aq --filter label=com.docker.swarm.service.name=rgtr-probe)" ] ||
        swarm_fail "the probe service's containers are still there 30s after its removal"
    log "probe ok: http://127.0.0.1:$port/ answered from the swarm task; service removed"
}

# swarm_init: docker_gwbridge first (on GW_SUBNET, so that swarm does not make its own on a
# default pool), then a single-node swarm on 127.0.0.1 with its networks from SWARM_POOL,
# the test overlay, the checks and the probe.
swarm_init() {
    local state
    log "docker_gwbridge on $GW_SUBNET (bridge $GW_BRIDGE, no ICC, no masquerading, ports on 127.0.0.1)"
    sdk network create --driver bridge --subnet "$GW_SUBNET" \
        --opt "com.docker.network.bridge.name=$GW_BRIDGE" \
        --opt com.docker.network.bridge.enable_icc=false \
        --opt com.docker.network.bridge.enable_ip_masquerade=false \
        --opt com.docker.network.bridge.host_binding_ipv4=127.0.0.1 \
        docker_gwbridge >/dev/null || swarm_fail "cannot create docker_gwbridge"
    vxlan_drop_rule -I
    log "swarm init (127.0.0.1:$SWARM_PORT, data path port $DATA_PORT, address pool $SWARM_POOL)"
    # (its output has the join token: not kept)
    sdk swarm init --advertise-addr 127.0.0.1 --listen-addr "127.0.0.1:$SWARM_PORT" \
        --data-path-addr 127.0.0.1 --data-path-port "$DATA_PORT" \
        --default-addr-pool "$SWARM_POOL" --default-addr-pool-mask-length 24 >/dev/null ||
        swarm_fail "docker swarm init failed"
    state=$(sdk info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}} {{.Swarm.NodeAddr}}') ||
        swarm_fail "docker info failed after swarm init"
    [ "$state" = "active true 127.0.0.1" ] ||
        swarm_fail "after swarm init: node state/manager/address '$state', not 'active true 127.0.0.1'"
    ensure_ingress
    sdk network create --driver overlay --attachable --label rgtr-test "$OVERLAY" >/dev/null ||
        swarm_fail "cannot create the overlay network $OVERLAY"
    log "overlay network $OVERLAY on $(sdk network inspect "$OVERLAY" --format '{{range .IPAM.Config}}{{.Subnet}}{{end}}')"
    swarm_probe
}

# --------------------------------------------------------------- run --

engine_stop_quiet() {
    set +e
    local ids
    if docker_ping; then
        if [ "$ENGINE" = swarm ]; then swarm_leave; fi
        ids=$(dk ps -aq 2>/dev/null)
        if [ -n "$ids" ]; then
            log "removing containers"
            # shellcheck disable=SC2086
            dk rm -f -v $ids >/dev/null 2>&1
        fi
        # User-defined networks: their br-* bridges outlive dockerd.
        dk network prune -f >/dev/null 2>&1
        if [ "$ENGINE" = swarm ]; then dk network rm docker_gwbridge >/dev/null 2>&1; fi
    fi
    stop_engine
    kill_orphaned_containers
    if [ "$ENGINE" = swarm ]; then kill_orphaned_proxies "$GW_SUBNET"; fi
    kill_leftovers
    unmount_all
    if [ "$ENGINE" = swarm ]; then remove_swarm_links; fi
    remove_bridge
    remove_pool_bridges
    if [ "$ENGINE" = swarm ]; then vxlan_drop_rule -D; fi
    remove_cgroups
    remove_run_containerd
    rm -f "$SOCK" "$CTRD_SOCK"
    set -e
}

# Bridges of user-defined networks (br-ID) in this engine's address pool that a stopped or
# crashed engine left behind, when nothing is attached to them.
remove_pool_bridges() {
    local br addr
    while read -r br addr; do
        if [[ $br != br-* ]] || ! ip_in_cidr "${addr%/*}" "$POOL" ||
            [ -n "$(ip -o link show master "$br" 2>/dev/null)" ]; then
            continue
        fi
        log "deleting leftover bridge $br ($addr)"
        ip link del "$br" 2>/dev/null || log "WARNING: cannot delete bridge $br"
    done < <(ip -o -4 addr show 2>/dev/null | awk '{print $2, $4}')
}

on_start_exit() {
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        log "start failed, cleaning up (logs kept in $DIR)"
        engine_stop_quiet
    fi
}

# fresh_dir: a start begins from an empty DIR (refused while that engine runs).
fresh_dir() {
    local f pid
    for f in "$DOCKERD_PIDFILE" "$CTRD_PIDFILE"; do
        if pid=$(pidfile_pid "$f"); then
            die "an engine is already running for $DIR (pid $pid); run '$0 stop' first"
        fi
    done
    if [ -d "$DIR" ]; then
        engine_stop_quiet
        rm -rf "$DIR"
    fi
    mkdir -p "$DOCKER_DIR"
}

server_version() {
    dk version --format '{{.Server.Version}}' 2>/dev/null || die "docker version failed against $DIR"
}

print_server() {
    log "engine in $DIR:"
    dk version 2>&1 | sed -n '/^Server/,$p' >&2 || die "docker version failed"
}

cmd_start28() {
    select_engine docker28 "$1" create
    local t0=$SECONDS driver
    [ "$(id -u)" = 0 ] || die "must run as root (dockerd, bridges, mounts)"
    fetch_engine28
    # services.sh's checks, with the unpacked dockerd, containerd, shim and docker-proxy
    # first in PATH (docker-init, runc and the docker CLI are the system's).
    PATH=$ROOT28/usr/sbin:$ROOT28/usr/bin:$PATH check_engine_prereqs
    [ "$DOCKER_PROXY" = "$ROOT28/usr/sbin/docker-proxy" ] ||
        die "docker-proxy resolved to $DOCKER_PROXY, not the 28.5 one"
    [ -e "$DOCKER_INIT" ] || die "docker-init ($DOCKER_INIT) is a dangling link (Debian package tini)"
    check_busybox
    fresh_dir
    trap on_start_exit EXIT
    driver=$(pick_storage_driver)
    log "storage driver: $driver; $DOCKER28_DEB_VERSIONS; runc $(command -v runc)"
    setup_bridge
    write_engine28_config "$driver"
    start_engine
    build_images
    verify_published_port
    print_server
    {
        printf 'export DOCKER28_HOST=%q\n' "unix://$SOCK"
        printf 'export DOCKER28_SOCK=%q\n' "$SOCK"
        printf 'export DOCKER28_DIR=%q\n' "$DIR"
        printf 'export DOCKER28_VERSION=%q\n' "$(server_version)"
    } >"$ENVF"
    trap - EXIT
    log "Docker $(server_version) engine up in $((SECONDS - t0))s; source $ENVF"
}

cmd_start_swarm() {
    select_engine swarm "$1" create
    local t0=$SECONDS driver
    [ "$(id -u)" = 0 ] || die "must run as root (dockerd, bridges, mounts, iptables)"
    need_cmd timeout "Debian package coreutils"
    need_cmd iptables "Debian package iptables"
    fetch_engine28
    PATH=$ROOT28/usr/sbin:$ROOT28/usr/bin:$PATH check_engine_prereqs
    [ "$DOCKER_PROXY" = "$ROOT28/usr/sbin/docker-proxy" ] ||
        die "docker-proxy resolved to $DOCKER_PROXY, not the 28.5 one"
    [ -e "$DOCKER_INIT" ] || die "docker-init ($DOCKER_INIT) is a dangling link (Debian package tini)"
    check_busybox
    fresh_dir
    swarm_settings # a former start's swarm.conf served fresh_dir's cleanup only
    ports_free "the swarm engine's control (RGTR_SWARM_PORT), gossip and data path (RGTR_SWARM_DATA_PORT) ports; is another swarm engine running?" \
        "$SWARM_PORT" 7946 "$DATA_PORT"
    write_swarm_conf
    trap on_start_exit EXIT
    driver=$(pick_storage_driver)
    log "storage driver: $driver; $DOCKER28_DEB_VERSIONS; runc $(command -v runc)"
    setup_bridge
    write_swarm_engine_config "$driver"
    start_engine
    build_images
    verify_published_port
    swarm_init
    print_server
    local node
    node=$(sdk info --format '{{.Swarm.NodeID}}') || swarm_fail "docker info failed"
    [ -n "$node" ] || swarm_fail "no swarm node ID"
    {
        printf 'export SWARM_DOCKER_HOST=%q\n' "unix://$SOCK"
        printf 'export SWARM_DOCKER_SOCK=%q\n' "$SOCK"
        printf 'export SWARM_DIR=%q\n' "$DIR"
        printf 'export SWARM_NODE_ID=%q\n' "$node"
        printf 'export SWARM_NODE_ADDR=%q\n' 127.0.0.1
        printf 'export SWARM_VERSION=%q\n' "$(server_version)"
        printf 'export SWARM_OVERLAY=%q\n' "$OVERLAY"
    } >"$ENVF"
    trap - EXIT
    log "Docker $(server_version) swarm manager $node up in $((SECONDS - t0))s; source $ENVF"
}

cmd_start_tls() {
    select_engine tls "$1" create
    local t0=$SECONDS driver
    TLS_PORT=${RGTR_TLS_DOCKER_PORT:-12376}
    check_engine_prereqs
    need_cmd openssl "Debian package openssl"
    check_busybox
    fresh_dir
    ports_free "the TLS engine uses RGTR_TLS_DOCKER_PORT=$TLS_PORT; set RGTR_TLS_DOCKER_PORT" "$TLS_PORT"
    trap on_start_exit EXIT
    make_tls
    write_client_dirs
    driver=$(pick_storage_driver)
    log "storage driver: $driver"
    setup_bridge
    write_tls_engine_config "$driver"
    start_engine
    check_tls_refusals
    build_images
    verify_published_port
    print_server
    {
        printf 'export RGTR_TLS_DOCKER_HOST=%q\n' "tcp://127.0.0.1:$TLS_PORT"
        printf 'export RGTR_TLS_DOCKER_CERTS=%q\n' "$DIR/certs"
        printf 'export RGTR_TLS_DOCKER_BADCA=%q\n' "$DIR/badca"
        printf 'export RGTR_TLS_DOCKER_NOCLIENT=%q\n' "$DIR/noclient"
        printf 'export RGTR_TLS_DOCKER_DIR=%q\n' "$DIR"
    } >"$ENVF"
    trap - EXIT
    log "TLS engine (Docker $(server_version)) up on tcp://127.0.0.1:$TLS_PORT in $((SECONDS - t0))s; source $ENVF"
}

cmd_stop() {
    select_engine "$1" "$2"
    [ "$(id -u)" = 0 ] || die "must run as root"
    if [ ! -d "$DIR" ]; then
        log "$DIR does not exist; nothing to stop"
        return 0
    fi
    engine_stop_quiet
    log "stopped ($DIR)"
}

# engine_steps ENGINE BASE STEP...: stop_engine / start_engine on an existing engine.
engine_steps() {
    select_engine "$1" "$2"
    shift 2
    [[ -d $DIR && -s $DOCKERD_CMD ]] || die "no engine in $DIR (run its start command first)"
    local step
    for step in "$@"; do "$step"; done
}

# --------------------------------------------------------- capture --

# cmd_capture BASE [OUT]: with the 28.5 engine of BASE running, the two test data files.
cmd_capture() {
    select_engine docker28 "$1"
    local out=${2:-$REPO/tests/data} ver
    docker_ping || die "the 28.5 engine of $DIR is not running (run '$0 start $1' first)"
    need_cmd python3
    mkdir -p "$out"
    out=$(cd "$out" && pwd -P)
    ver=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$REPO/Cargo.toml" | head -n 1)
    # timeout: a stuck engine must not hang the capture.
    timeout 300 python3 - "$SOCK" "$out" "$(server_version)" "${ver:-0.0.0}" <<'PY'
"""Capture, against the engine on SOCK: the raw HTTP response (head and chunked body exactly
as received) of the daemon's own GET /events request while one container goes through
start, pause, unpause, kill -s HUP, stop, restart, a health check and removal; and the
inspect document of a container with a published port, env, labels, on a user network."""
import json, os, socket, subprocess, sys, time, urllib.parse

sock, out, engine, version = sys.argv[1:5]
major_minor = ".".join(engine.split(".")[:2])
FILTER = ('{"type":["container"],"event":["start","die","died","destroy","remove","pause",'
          '"unpause","health_status","kill"]}')


def request(path):
    """The daemon's own request (src/docker/mod.rs write_get)."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    s.sendall(("GET %s HTTP/1.1\r\nHost: docker\r\nUser-Agent: registrator/%s\r\n"
               "Accept: application/json\r\n\r\n" % (path, version)).encode())
    return s


def docker(*args):
    r = subprocess.run(["docker", "-H", "unix://" + sock] + list(args),
                       stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("docker %s: %s" % (" ".join(args), r.stderr.strip()))
    return r.stdout.strip()


def get_json(path):
    """A whole JSON response, asked for with HTTP/1.0 (neither chunked nor kept alive)."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(sock)
    s.sendall(("GET %s HTTP/1.0\r\nHost: docker\r\n\r\n" % path).encode())
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200")):
        sys.exit("GET %s: %r" % (path, head[:200]))
    return json.loads(body)


for name in ("cap28", "cap28net", "cap28hc"):
    subprocess.run(["docker", "-H", "unix://" + sock, "rm", "-f", name], capture_output=True)
subprocess.run(["docker", "-H", "unix://" + sock, "network", "rm", "rgtr-cap"], capture_output=True)

ev = request("/events?filters=" + urllib.parse.quote(FILTER, safe=""))
ev.settimeout(0.2)
raw = b""


def pump(until=None, timeout=20.0):
    """Read the event stream until `until` (bytes) has appeared `until[1]` times."""
    global raw
    deadline = time.time() + timeout
    while time.time() < deadline:
        if until and raw.count(until[0]) >= until[1]:
            return
        try:
            b = ev.recv(65536)
        except socket.timeout:
            continue
        if not b:
            sys.exit("the engine closed the event stream")
        raw += b
    if until:
        sys.exit("timed out waiting for %r x%d in the event stream" % until)


pump(timeout=0.5)  # the head
# CMD sleep: SIGHUP ends it (httpd would reload instead).
docker("run", "-d", "--name", "cap28", "-p", "127.0.0.1::80", "-e", "SERVICE_NAME=cap",
       "-l", "SERVICE_TAGS=one,two", "bb")
docker("pause", "cap28")
docker("unpause", "cap28")
docker("kill", "-s", "HUP", "cap28")            # kill (signal 1), die (129 through tini)
pump((b'"Action":"die"', 1))
docker("start", "cap28")
docker("stop", "-t", "2", "cap28")             # kill (signal 15), die
docker("start", "cap28")
docker("restart", "-t", "0", "cap28")          # kill, die, start
docker("network", "create", "--label", "rgtr-test", "rgtr-cap")
net = docker("run", "-d", "--name", "cap28net", "--network", "rgtr-cap", "-p", "127.0.0.1::80",
             "-e", "SERVICE_REGION=us2", "-e", "SERVICE_80_NAME=web", "-e", "SERVICE_443_IGNORE=1",
             "-l", "SERVICE_TAGS=blue,green", "-l", "com.example.team=ops", "nginx")
docker("run", "-d", "--name", "cap28hc", "--health-cmd", "true", "--health-interval", "1s",
       "--health-start-period", "0s", "bb")
pump((b'health_status', 1), timeout=30)
inspect = get_json("/containers/%s/json" % net)
docker("rm", "-f", "cap28", "cap28net", "cap28hc")  # kill (signal 9), die, destroy
docker("network", "rm", "rgtr-cap")
pump((b'"Action":"destroy"', 3))
pump(timeout=1.0)  # anything still in flight, so the capture ends after a whole chunk

if not raw.startswith(b"HTTP/1.1 200 OK\r\n") or not raw.endswith(b"\r\n"):
    sys.exit("unexpected capture: %r ... %r" % (raw[:40], raw[-40:]))
actions = []
for line in raw.split(b"\n"):
    if line.startswith(b"{"):
        e = json.loads(line)
        actions.append(e["Action"] + ("(%s)" % e["Actor"]["Attributes"]["signal"]
                                      if e["Action"] == "kill" else ""))
for a in ("start", "kill(1)", "kill(15)", "kill(9)", "die", "pause", "unpause", "destroy"):
    if a not in actions:
        sys.exit("the capture lacks a %s event: %s" % (a, actions))
if not any(a.startswith("health_status") for a in actions):
    sys.exit("the capture lacks a health_status event: %s" % actions)

ev_path = os.path.join(out, "events-engine-%s.raw" % major_minor)
in_path = os.path.join(out, "inspect-engine-%s.json" % major_minor)
with open(ev_path, "wb") as f:
    f.write(raw)
with open(in_path, "w") as f:
    f.write(json.dumps(inspect, indent=1))  # like inspect-engine-20.10.json
print("%s: %d bytes, %d events: %s" % (ev_path, len(raw), len(actions), " ".join(actions)))
print("%s: %s on %s, ports %s" % (in_path, inspect["Name"], list(inspect["NetworkSettings"]["Networks"]),
                                  inspect["NetworkSettings"]["Ports"]))
PY
}

# cmd_capture_swarm BASE [OUT]: with the swarm engine of BASE running (and nothing else in its
# swarm), the swarm test data, written into OUT (default tests/data) as received (bodies and
# the event stream byte for byte; nothing re-indented). MM is the engine's major.minor (28.5).
# The services it makes (all bb, --no-resolve-image, removed again at the end):
#   cap-web     replicated, 1 replica, httpd, on the test overlay (SWARM_OVERLAY); port 80
#               published twice: ingress 18080 and host mode 18081; labels SERVICE_NAME=web,
#               SERVICE_80_NAME=www, SERVICE_TAGS=blue,green, SERVICE_80_CHECK_HTTP=/,
#               SERVICE_80_CHECK_INTERVAL=5s; env SERVICE_REGION=eu1 (in its ContainerSpec)
#   cap-dns     replicated, 1 replica, sleep; two ingress ports 18053->53, tcp and udp;
#               SERVICE_NAME=dns; on the ingress network only
#   cap-worker  replicated, 1 replica, sleep, on the overlay, nothing published, no labels
#   cap-global  global (one task on the one node), httpd on the overlay, host mode 18082->80;
#               SERVICE_NAME=edge
#   cap-idle    replicated, made with 1 replica then scaled to 0 (so it has a PreviousSpec);
#               ingress port 8080 with the published port left to the swarm (30000 and up);
#               SERVICE_NAME=idle
# Files:
#   services-swarm-MM.json  GET /services: the five services above
#   nodes-swarm-MM.json     GET /nodes/{this node's ID}: the single manager (Status.Addr
#                           127.0.0.1, ManagerStatus.Addr 127.0.0.1:2377)
#   info-swarm-MM.json      GET /info on the manager (Swarm.LocalNodeState active,
#                           ControlAvailable true)
#   events-swarm-MM.raw     the raw HTTP response (head and chunked body exactly as received) of
#                           the daemon's own -swarm request, GET /events?filters=
#                           {"type":["container","service","node"],"event":["start","die",
#                           "died","destroy","remove","pause","unpause","health_status","kill",
#                           "create","update"]} (src/docker/mod.rs SWARM_EVENT_FILTER), while
#                           service cap-ev (httpd on the overlay, --update-monitor 1s) is
#                           created (a task container is created and started), scaled 1->2
#                           (another starts) and 2->1 (one is killed and dies), updated with
#                           --label-add rgtr.capture=1, then --publish-add mode=host,
#                           published=18083,target=80 (a rolling update: the task is replaced),
#                           the node updated (--label-add rgtr-capture=1, removed again after the
#                           capture), and the service removed; cut right after the chunk of the
#                           service remove event (the containers' kill/die/destroy come later)
#   if the 28.5 engine of the same BASE runs (tests/docker28.sh start BASE), from it too:
#   info-noswarm-MM.json    GET /info on an engine in no swarm (Swarm.LocalNodeState inactive)
#   services-noswarm-MM.raw the raw HTTP response of GET /services there (503, JSON message)
cmd_capture_swarm() {
    local base=$1 out=${2:-$REPO/tests/data} ver noswarm="" others
    select_engine swarm "$base"
    docker_ping || die "the swarm engine of $DIR is not running (run '$0 start-swarm $base' first)"
    need_cmd python3
    mkdir -p "$out"
    out=$(cd "$out" && pwd -P)
    others=$(sdk service ls --format '{{.Name}}' | grep -v '^cap-' || true)
    [ -z "$others" ] || die "capture-swarm needs a swarm without other services; it has: $(paste -sd' ' <<<"$others")"
    # (a former capture's leftover cap-* services, which the capture removes first, may hold them)
    if ! sdk service ls --format '{{.Name}}' | grep -q '^cap-'; then
        ports_free "capture-swarm publishes host-mode ports 18081, 18082 and 18083" 18081 18082 18083
    fi
    if [ -S "$(dirname "$DIR")/docker28/docker.sock" ] &&
        [ "$(curl_local --max-time 3 --unix-socket "$(dirname "$DIR")/docker28/docker.sock" \
            http://localhost/_ping 2>/dev/null)" = OK ]; then
        noswarm=$(dirname "$DIR")/docker28/docker.sock
        log "the 28.5 engine of $(dirname "$DIR") runs: capturing its /info and /services too"
    fi
    ver=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$REPO/Cargo.toml" | head -n 1)
    timeout 600 python3 - "$SOCK" "$out" "$(server_version)" "${ver:-0.0.0}" "$OVERLAY" "$noswarm" <<'PY'
"""Capture the swarm test data; see cmd_capture_swarm."""
import json, os, socket, subprocess, sys, time, urllib.parse

sock, out, engine, version, overlay, noswarm = sys.argv[1:7]
major_minor = ".".join(engine.split(".")[:2])
FILTER = ('{"type":["container","service","node"],"event":["start","die","died","destroy",'
          '"remove","pause","unpause","health_status","kill","create","update"]}')
MAX_SIZE = 40 * 1024
COMMON = ["--detach", "--quiet", "--no-resolve-image", "--stop-grace-period", "1s"]
HTTPD = ["bb", "httpd", "-f", "-p", "80", "-h", "/tmp"]


def docker(*args):
    try:
        r = subprocess.run(["docker", "-H", "unix://" + sock] + list(args), stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        sys.exit("docker %s: timed out" % " ".join(args))
    if r.returncode != 0:
        sys.exit("docker %s: %s" % (" ".join(args), r.stderr.strip()))
    return r.stdout.strip()


def raw_get(path, on=None):
    """The whole response to an HTTP/1.0 GET (neither chunked nor kept alive): head, body."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(30)
    s.connect(on or sock)
    s.sendall(("GET %s HTTP/1.0\r\nHost: docker\r\nUser-Agent: registrator/%s\r\n"
               "Accept: application/json\r\n\r\n" % (path, version)).encode())
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def body_of(path, on=None):
    head, body = raw_get(path, on)
    if not head.startswith(b"HTTP/1.0 200"):
        sys.exit("GET %s: %r %r" % (path, head[:200], body[:300]))
    json.loads(body)
    return body


def q(obj):
    return urllib.parse.quote(json.dumps(obj, separators=(",", ":")), safe="")


def running(service):
    tasks = json.loads(body_of("/tasks?filters=" + q({"service": [service], "desired-state": ["running"]})))
    return sum(1 for t in tasks if t["Status"]["State"] == "running")


def containers(service):
    return docker("ps", "-aq", "--filter", "label=com.docker.swarm.service.name=" + service).split()


def wait(what, cond, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.2)
    sys.exit("timed out (%ds) waiting for %s" % (timeout, what))


def remove_services(names):
    if names:
        docker("service", "rm", *names)
        for n in names:
            wait("the containers of %s to go" % n, lambda n=n: not containers(n))


def write(name, data):
    if len(data) > MAX_SIZE:
        sys.exit("%s would be %d bytes (more than %d)" % (name, len(data), MAX_SIZE))
    path = os.path.join(out, name)
    with open(path, "wb") as f:
        f.write(data)
    print("%s: %d bytes" % (path, len(data)))


remove_services([n for n in docker("service", "ls", "--format", "{{.Name}}").split() if n.startswith("cap-")])
node = json.loads(body_of("/info"))["Swarm"]["NodeID"]

# --------------------------------------------------------------- the services --
docker("service", "create", *COMMON, "--name", "cap-web", "--network", overlay,
       "--publish", "published=18080,target=80", "--publish", "mode=host,published=18081,target=80",
       "--label", "SERVICE_NAME=web", "--label", "SERVICE_80_NAME=www", "--label", "SERVICE_TAGS=blue,green",
       "--label", "SERVICE_80_CHECK_HTTP=/", "--label", "SERVICE_80_CHECK_INTERVAL=5s",
       "--env", "SERVICE_REGION=eu1", *HTTPD)
docker("service", "create", *COMMON, "--name", "cap-dns",
       "--publish", "published=18053,target=53,protocol=tcp",
       "--publish", "published=18053,target=53,protocol=udp", "--label", "SERVICE_NAME=dns", "bb")
docker("service", "create", *COMMON, "--name", "cap-worker", "--network", overlay, "bb")
docker("service", "create", *COMMON, "--name", "cap-global", "--mode", "global", "--network", overlay,
       "--publish", "mode=host,published=18082,target=80", "--label", "SERVICE_NAME=edge", *HTTPD)
docker("service", "create", *COMMON, "--name", "cap-idle", "--publish", "target=8080",
       "--label", "SERVICE_NAME=idle", "bb")
for n in ("cap-web", "cap-dns", "cap-worker", "cap-global", "cap-idle"):
    wait("a running task of " + n, lambda n=n: running(n) == 1)
docker("service", "scale", "--detach", "cap-idle=0")
wait("cap-idle to have no task running", lambda: running("cap-idle") == 0 and not containers("cap-idle"))
for port in (18081, 18082):  # the host-mode ports answer on 127.0.0.1
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    c.sendall(b"GET / HTTP/1.0\r\n\r\n")
    reply = b""
    while True:
        b = c.recv(4096)
        if not b:
            break
        reply += b
    c.close()
    if not reply.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200")) or not reply.endswith(b"\r\n\r\nok\n"):
        sys.exit("127.0.0.1:%d answered %r" % (port, reply[:200]))

services = body_of("/services")
names = sorted(s["Spec"]["Name"] for s in json.loads(services))
if names != ["cap-dns", "cap-global", "cap-idle", "cap-web", "cap-worker"]:
    sys.exit("unexpected services: %s" % names)
nodes = body_of("/nodes/" + node)
info = body_of("/info")
if json.loads(info)["Swarm"]["LocalNodeState"] != "active":
    sys.exit("the swarm engine is in no swarm")
if noswarm:
    info_no = body_of("/info", noswarm)
    if json.loads(info_no)["Swarm"]["LocalNodeState"] != "inactive":
        sys.exit("the 28.5 engine is in a swarm")
    head, body = raw_get("/services", noswarm)
    if not head.startswith(b"HTTP/1.0 503"):
        sys.exit("GET /services on the non-swarm engine: %r" % head)
    services_no = head + b"\r\n\r\n" + body

# ----------------------------------------------------------------- the events --
ev = socket.socket(socket.AF_UNIX)
ev.connect(sock)
ev.sendall(("GET /events?filters=%s HTTP/1.1\r\nHost: docker\r\nUser-Agent: registrator/%s\r\n"
            "Accept: application/json\r\n\r\n" % (urllib.parse.quote(FILTER, safe=""), version)).encode())
ev.settimeout(0.2)
raw = b""


def chunks():
    """(end offset of the chunk, event) for each complete chunk received so far."""
    res = []
    head_end = raw.find(b"\r\n\r\n")
    if head_end < 0:
        return res
    i = head_end + 4
    while True:
        j = raw.find(b"\r\n", i)
        if j < 0:
            return res
        size = int(raw[i:j].split(b";")[0], 16)
        if size == 0 or len(raw) < j + 2 + size + 2:
            return res
        data = raw[j + 2:j + 2 + size]
        if raw[j + 2 + size:j + 4 + size] != b"\r\n":
            sys.exit("bad chunk framing at %d" % j)
        for line in data.split(b"\n"):
            if line.strip():
                res.append((j + 4 + size, json.loads(line)))
        i = j + 4 + size


def count(typ, action, service=None, **attrs):
    n = 0
    for _, e in chunks():
        a = e["Actor"]["Attributes"]
        if e["Type"] != typ or e["Action"] != action:
            continue
        if service and a.get("com.docker.swarm.service.name", a.get("name")) != service:
            continue
        if all(a.get(k) == v for k, v in attrs.items()):
            n += 1
    return n


def pump(what, cond, timeout=60):
    global raw
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        try:
            b = ev.recv(65536)
        except socket.timeout:
            continue
        if not b:
            sys.exit("the engine closed the event stream")
        raw += b
    sys.exit("timed out (%ds) waiting for %s in the event stream" % (timeout, what))


time.sleep(0.5)
docker("service", "create", *COMMON, "--name", "cap-ev", "--network", overlay, "--update-monitor", "1s",
       "--update-delay", "0s", "--label", "SERVICE_NAME=ev", *HTTPD)
pump("the first task container's start", lambda: count("container", "start", "cap-ev") >= 1)
docker("service", "scale", "--detach", "cap-ev=2")
pump("the second task container's start", lambda: count("container", "start", "cap-ev") >= 2)
docker("service", "scale", "--detach", "cap-ev=1")
pump("a task container's die", lambda: count("container", "die", "cap-ev") >= 1)
n_upd = count("service", "update", "cap-ev")
docker("service", "update", "--detach", "--label-add", "rgtr.capture=1", "cap-ev")
pump("the label update", lambda: count("service", "update", "cap-ev") > n_upd)
docker("service", "update", "--detach", "--publish-add", "mode=host,published=18083,target=80", "cap-ev")
pump("the port update to complete", lambda: count("service", "update", "cap-ev", **{"updatestate.new": "completed"}) >= 1)
docker("node", "update", "--label-add", "rgtr-capture=1", node)
pump("the node update", lambda: count("node", "update") >= 1)
docker("service", "rm", "cap-ev")
pump("the service remove", lambda: count("service", "remove", "cap-ev") >= 1)
ev.close()
end = [off for off, e in chunks() if e["Type"] == "service" and e["Action"] == "remove"][0]
raw = raw[:end]
docker("node", "update", "--label-rm", "rgtr-capture", node)
if not raw.startswith(b"HTTP/1.1 200 OK\r\n"):
    sys.exit("unexpected event stream head: %r" % raw[:200])
seen = ["%s %s%s" % (e["Type"], e["Action"], "".join(
    " %s=%s" % (k, v) for k, v in sorted(e["Actor"]["Attributes"].items())
    if k in ("replicas.old", "replicas.new", "updatestate.old", "updatestate.new", "signal", "exitCode")))
    for _, e in chunks()]

remove_services(["cap-web", "cap-dns", "cap-worker", "cap-global", "cap-idle"])
wait("the containers of cap-ev to go", lambda: not containers("cap-ev"))

write("services-swarm-%s.json" % major_minor, services)
write("nodes-swarm-%s.json" % major_minor, nodes)
write("info-swarm-%s.json" % major_minor, info)
write("events-swarm-%s.raw" % major_minor, raw)
if noswarm:
    write("info-noswarm-%s.json" % major_minor, info_no)
    write("services-noswarm-%s.raw" % major_minor, services_no)
print("events: " + "; ".join(seen))
PY
}

# --------------------------------------------------------- commands --

case ${1:-} in
    fetch)
        [ $# -eq 1 ] || usage
        fetch_engine28
        log "$DOCKER28_DEB_VERSIONS"
        printf '%s\n' "$ROOT28"
        ;;
    capture)
        [ $# -eq 2 ] || [ $# -eq 3 ] || usage
        cmd_capture "$2" "${3:-}"
        ;;
    capture-swarm)
        [ $# -eq 2 ] || [ $# -eq 3 ] || usage
        cmd_capture_swarm "$2" "${3:-}"
        ;;
    *)
        [ $# -eq 2 ] || usage
        case $1 in
            start) cmd_start28 "$2" ;;
            stop) cmd_stop docker28 "$2" ;;
            stop-docker) engine_steps docker28 "$2" stop_engine ;;
            start-docker) engine_steps docker28 "$2" start_engine ;;
            restart-docker) engine_steps docker28 "$2" stop_engine start_engine ;;
            start-tls) cmd_start_tls "$2" ;;
            start-swarm) cmd_start_swarm "$2" ;;
            stop-swarm) cmd_stop swarm "$2" ;;
            stop-tls) cmd_stop tls "$2" ;;
            stop-tls-docker) engine_steps tls "$2" stop_engine ;;
            start-tls-docker) engine_steps tls "$2" start_engine ;;
            restart-tls-docker) engine_steps tls "$2" stop_engine start_engine ;;
            *) usage ;;
        esac
        ;;
esac
