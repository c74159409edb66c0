#!/usr/bin/env bash
# The Raspberry Pi binaries and the images, against the real thing: a private Docker engine and a
# Consul agent from tests/services.sh (on 127.0.0.1 only).
#
# 1. Each ARM binary that cross/build.sh made runs under Debian's qemu-user-static, on the CPU
#    of its oldest board (armv6: arm1176, armv7: cortex-a7, aarch64: cortex-a53): a container
#    is started, its service must appear in Consul, and go when the container dies.
# 2. The x86_64 image (Dockerfile) runs the daemon inside a container of the private engine,
#    with the engine's socket at /tmp/docker.sock and the host network: a service registers and
#    deregisters.
# 3. Each Dockerfile.rpi variant is built, and its architecture checked with docker image inspect.
# 4. ARMv6: no ARMv7-only instruction in the Rust code (the build without tls must have none at
#    all); the default build's only ones are NEON in ring's runtime-dispatched paths, and its
#    consul-tls run under qemu's arm1176 (no NEON) shows they are never taken there.
#
#   tests/pi.sh   (after `cross/build.sh all`, the armv6 build without tls and not stripped
#                  copied to target/pi/armv6-no-tls, and a static x86_64 build; .ci/run does
#                  all three)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

X86=target/x86_64-unknown-linux-musl/release/registrator
declare -A CPU=([arm-unknown-linux-musleabihf]=arm1176 [armv7-unknown-linux-musleabihf]=cortex-a7
    [aarch64-unknown-linux-musl]=cortex-a53)
declare -A QEMU=([arm-unknown-linux-musleabihf]=qemu-arm-static
    [armv7-unknown-linux-musleabihf]=qemu-arm-static [aarch64-unknown-linux-musl]=qemu-aarch64-static)
declare -A PLATFORM=([arm-unknown-linux-musleabihf]=linux/arm/v6
    [armv7-unknown-linux-musleabihf]=linux/arm/v7 [aarch64-unknown-linux-musl]=linux/arm64)
TARGETS=(arm-unknown-linux-musleabihf armv7-unknown-linux-musleabihf aarch64-unknown-linux-musl)

fail() { printf 'tests/pi.sh: FAIL: %s\n' "$*" >&2; exit 1; }
for t in "${TARGETS[@]}"; do
    [ -x "target/pi/$t/release/registrator" ] || fail "no target/pi/$t/release/registrator (run cross/build.sh all)"
    command -v "${QEMU[$t]}" >/dev/null || fail "${QEMU[$t]} not found (apt-get install qemu-user-static)"
done
[ -x /usr/bin/docker ] || fail "/usr/bin/docker (Debian's docker.io client, with BuildKit) not found"
[ -x "$X86" ] || fail "no $X86 (cargo build --release --target x86_64-unknown-linux-musl)"
ARMV6_NO_TLS=target/pi/armv6-no-tls
[ -x "$ARMV6_NO_TLS" ] || fail "no $ARMV6_NO_TLS (the arm-unknown-linux-musleabihf build without tls, not stripped)"
command -v arm-linux-gnueabihf-objdump >/dev/null ||
    fail "arm-linux-gnueabihf-objdump not found (apt-get install binutils-arm-linux-gnueabihf)"

# ARMv7-only instructions: ARM-mode v6T2/v7 integer ones, barriers, and NEON (VFPv2 is fine).
V7_ONLY='^(movw|movt|dmb|dsb|isb|sdiv|udiv|ubfx|sbfx|bfi|bfc|rbit|mls|pldw|v(ld[1-4]|st[1-4]|eor|ext|tbl|tbx|trn|zip|uzp|rev|bsl|bit|bif|orr|orn|and|bic|dup|mull|mlal|qadd|qsub|shl|shr|sra|rshr|sli|sri|add\.i|sub\.i|mov\.i|mvn\.i))'
# v7_in BIN: "function instruction" for every ARMv7-only instruction (function names need an
# unstripped binary; there, mapping symbols also keep literal pools from reading as code).
v7_in() {
    arm-linux-gnueabihf-objdump -d --no-show-raw-insn "$1" | awk -v re="$V7_ONLY" '
        /^[0-9a-f]+ <.*>:$/ { fn = $2; gsub(/[<>:]/, "", fn) }
        NF >= 2 && $1 ~ /:$/ && $2 ~ re { print fn, $2 }'
}
echo "== ARMv6 instruction check"
arch_of() { arm-linux-gnueabihf-readelf -A "$1" | awk '/Tag_CPU_arch:/ {print $2}'; }
for bin in "$ARMV6_NO_TLS" target/pi/arm-unknown-linux-musleabihf/release/registrator; do
    [ "$(arch_of "$bin")" = v6 ] || fail "$bin is marked $(arch_of "$bin"), not v6"
done
# The build without tls, unstripped: the only ARMv7 instructions are musl's own runtime-selected
# variants (__a_barrier_v7, __a_cas_v7: used only when the kernel reports an ARMv7 CPU).
found=$(v7_in "$ARMV6_NO_TLS")
echo "$found" | awk 'NF {n[$1 " " $2]++} END {for (k in n) print "  armv6 without tls: " n[k] " x " k}'
stray=$(echo "$found" | awk 'NF && $1 !~ /^__a_[a-z]+_v7$/')
[ -z "$stray" ] || fail "ARMv7-only instructions outside musl's runtime-selected atomics: $(echo "$stray" | sort | uniq -c | head)"
# The default build (with tls), stripped: counted only; ring's NEON paths are taken only when
# the CPU reports NEON, which the arm1176 run below shows.
n=$(v7_in target/pi/arm-unknown-linux-musleabihf/release/registrator | wc -l)
echo "  armv6 with tls (default): Tag_CPU_arch v6, $n ARMv7-only instructions (ring's NEON paths, musl's atomics, literal pools read as code)"

dir=$(mktemp -d /tmp/rgtr.XXXXXX)
daemon_pid=""
cleanup() {
    if [ -n "$daemon_pid" ]; then kill "$daemon_pid" 2>/dev/null || true; fi
    bash tests/services.sh stop "$dir" >/dev/null 2>&1 || true
    if [ "${RGTR_KEEP:-0}" = 1 ]; then echo "kept $dir" >&2; else rm -rf "$dir"; fi
}
trap cleanup EXIT
bash tests/services.sh start "$dir" >/dev/null
# shellcheck disable=SC1091
source "$dir/env"
dk() { docker -H "$DOCKER_HOST" "$@"; }
# Images are built with BuildKit (the legacy builder gives an ARG step on FROM scratch the host's
# platform): Debian's docker.io client has it built in, a newer CLI needs buildx.
dkb() { DOCKER_BUILDKIT=1 /usr/bin/docker -H "$DOCKER_HOST" build "$@"; }
services() { curl --noproxy '*' -sf "http://$CONSUL_HTTP_ADDR/v1/agent/services"; }
host=$(cat /proc/sys/kernel/hostname)

# wait_until WHAT CMD...: polls CMD every 0.2 s for up to 60 s.
wait_until() {
    local what=$1 i
    shift
    for ((i = 0; i < 300; i++)); do
        "$@" && return 0
        sleep 0.2
    done
    fail "timed out waiting for $what"
}
has() { services | grep -q "\"$1\""; }
hasnt() { ! has "$1"; }

# cycle NAME LOG: a container comes and goes; its service must follow.
cycle() {
    local name=$1 log=$2 id="$host:$1:80"
    dk run -d --name "$name" -p 127.0.0.1::80 bb >/dev/null
    wait_until "$id in Consul (log: $log)" has "$id"
    echo "  registered:   $id"
    dk rm -f "$name" >/dev/null
    wait_until "$id to leave Consul (log: $log)" hasnt "$id"
    echo "  deregistered: $id"
}

for t in "${TARGETS[@]}"; do
    bin=target/pi/$t/release/registrator
    log=$dir/qemu-$t.log
    echo "== $t under ${QEMU[$t]} -cpu ${CPU[$t]} ($(stat -c %s "$bin") bytes; $(file -b "$bin" | cut -d, -f1-2))"
    "${QEMU[$t]}" -cpu "${CPU[$t]}" "$bin" --version
    RUST_LOG=registrator=info "${QEMU[$t]}" -cpu "${CPU[$t]}" "$bin" \
        "consul://$CONSUL_HTTP_ADDR" >"$log" 2>&1 &
    daemon_pid=$!
    wait_until "the daemon under qemu to subscribe (log: $log)" grep -q "listening for events" "$log"
    cycle "pi-${t%%-*}" "$log"
    kill -TERM "$daemon_pid"
    wait "$daemon_pid" || fail "$t: exit status $? after SIGTERM (log: $log)"
    daemon_pid=""
    sed 's/^/  | /' "$log"
done

t=arm-unknown-linux-musleabihf
echo "== $t consul-tls under qemu-arm-static -cpu arm1176 (ring's NEON paths must not run)"
log=$dir/qemu-$t-tls.log
CONSUL_CACERT=$RGTR_TLS_DIR/ca.pem CONSUL_CLIENT_CERT=$RGTR_TLS_DIR/client.pem \
    CONSUL_CLIENT_KEY=$RGTR_TLS_DIR/client-key.pem RUST_LOG=registrator=info \
    qemu-arm-static -cpu arm1176 "target/pi/$t/release/registrator" \
    "consul-tls://$CONSUL_HTTPS_ADDR" >"$log" 2>&1 &
daemon_pid=$!
wait_until "the daemon under qemu to subscribe (log: $log)" grep -q "listening for events" "$log"
cycle pi-armv6-tls "$log"
kill -TERM "$daemon_pid"
wait "$daemon_pid" || fail "$t consul-tls: exit status $? after SIGTERM (log: $log)"
daemon_pid=""
sed 's/^/  | /' "$log"

echo "== x86_64 image (Dockerfile), the daemon in a container of the private engine"
tar -c Dockerfile "$X86" | dkb -q -t rgtr-test/registrator - >/dev/null
dk image inspect --format '  image: {{.Os}}/{{.Architecture}} {{.Size}} bytes' rgtr-test/registrator
dk run -d --name registrator --net=host -v "${DOCKER_HOST#unix://}:/tmp/docker.sock" \
    -e RUST_LOG=registrator=info rgtr-test/registrator "consul://$CONSUL_HTTP_ADDR" >/dev/null
wait_until "the containerized daemon to subscribe" sh -c "docker -H $DOCKER_HOST logs registrator 2>&1 | grep -q 'listening for events'"
cycle image-test "docker logs registrator"
dk stop -t 5 registrator >/dev/null
dk logs registrator 2>&1 | sed 's/^/  | /'
[ "$(dk inspect --format '{{.State.ExitCode}}' registrator)" = 0 ] || fail "the containerized daemon did not exit 0"
dk rm registrator >/dev/null

echo "== Dockerfile.rpi variants"
for t in "${TARGETS[@]}"; do
    tar -c Dockerfile.rpi "target/pi/$t/release/registrator" |
        dkb -q -f Dockerfile.rpi --platform "${PLATFORM[$t]}" --build-arg "TARGET=$t" \
            -t "rgtr-test/registrator:$t" - >/dev/null
    got=$(dk image inspect --format '{{.Os}}/{{.Architecture}}{{if .Variant}}/{{.Variant}}{{end}}' "rgtr-test/registrator:$t")
    echo "  $t: $got"
    [ "$got" = "${PLATFORM[$t]}" ] || fail "$t image is $got, not ${PLATFORM[$t]}"
done
echo "tests/pi.sh: all passed"
