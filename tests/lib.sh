# shellcheck shell=bash
# Shared by tests/services.sh and tests/podman.sh (sourced; not run on its own): logging,
# process helpers, and the busybox root filesystem the test images are imported from.
# The sourcing script sets TAG (its name, for log lines) and STOP_WAIT (tenths of a second a
# process gets after SIGTERM) first.

log() { printf '[%s] %s\n' "$TAG" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$TAG" "$*" >&2; exit 1; }

need_cmd() {
    command -v "$1" >/dev/null 2>&1 ||
        die "required command '$1' not found${2:+ ($2)}"
}

# log_tail FILE [LINES]: the end of a log, when something did not come up.
log_tail() {
    local f=$1
    if [ -s "$f" ]; then
        printf '[%s] ---- last lines of %s ----\n' "$TAG" "$f" >&2
        tail -n "${2:-40}" "$f" >&2 || true
        printf '[%s] ---- end of %s ----\n' "$TAG" "$f" >&2
    else
        printf '[%s] (%s is empty or missing)\n' "$TAG" "$f" >&2
    fi
}

pid_alive() {
    local pid=$1 state
    [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
    state=$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

pidfile_pid() {
    local pid
    [ -s "$1" ] || return 1
    pid=$(tr -dc 0-9 <"$1")
    pid_alive "$pid" || return 1
    printf '%s\n' "$pid"
}

# stop_pid NAME PID [WAIT]: SIGTERM, wait WAIT tenths of a second (default STOP_WAIT), then
# SIGKILL.
stop_pid() {
    local name=$1 pid=$2 wait=${3:-$STOP_WAIT} i
    pid_alive "$pid" || return 0
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < wait; i++)); do
        pid_alive "$pid" || return 0
        sleep 0.1
    done
    log "WARNING: $name (pid $pid) ignored SIGTERM for $((wait / 10))s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        pid_alive "$pid" || return 0
        sleep 0.1
    done
    log "WARNING: $name (pid $pid) still exists after SIGKILL"
}

curl_local() { curl --noproxy '*' -sS "$@"; }

# make_rootfs DIR BUSYBOX: a minimal root filesystem from a static busybox under DIR/rootfs,
# packed as DIR/rootfs.tar (printed), for `docker import` / `podman import`. `httpd -f -p 80
# -h /tmp` (or -h /var/www) in it answers 200 on "/", as Consul HTTP checks require a 2xx.
make_rootfs() {
    local dir=$1 busybox=$2 root=$1/rootfs a applets
    rm -rf "$root"
    mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root" "$root/var/www" \
        "$root/proc" "$root/sys" "$root/dev"
    chmod 1777 "$root/tmp"
    cp "$busybox" "$root/bin/busybox"
    chmod 0755 "$root/bin/busybox"
    applets=$("$busybox" --list)
    for a in sh ash sleep httpd nc true false echo cat test '[' kill ls ps \
        wget env mkdir rm id hostname printf grep sed seq date touch \
        uname head tail wc sort tr cut awk pidof; do
        grep -qxF -- "$a" <<<"$applets" || continue
        ln -sf busybox "$root/bin/$a"
    done
    for a in sh sleep httpd nc true false echo cat test kill touch; do
        [ -L "$root/bin/$a" ] || die "$busybox lacks the '$a' applet"
    done
    cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
    cat >"$root/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
    echo ok >"$root/tmp/index.html"
    echo ok >"$root/var/www/index.html"
    tar --numeric-owner --owner=0 --group=0 -C "$root" -cf "$dir/rootfs.tar" .
    printf '%s\n' "$dir/rootfs.tar"
}

# overlay_works DIR: can an overlay filesystem be mounted (and written) under DIR here? DIR is
# made and removed again.
overlay_works() {
    local p=$1 ok=1
    rm -rf "$p"
    mkdir -p "$p/lower" "$p/upper" "$p/work" "$p/merged"
    if mount -t overlay rgtr-overlay-probe \
        -o "lowerdir=$p/lower,upperdir=$p/upper,workdir=$p/work" \
        "$p/merged" 2>/dev/null; then
        touch "$p/merged/x" 2>/dev/null && ok=0
        umount "$p/merged" 2>/dev/null || umount -l "$p/merged" 2>/dev/null || true
    fi
    rm -rf "$p"
    return "$ok"
}
