#!/usr/bin/env bash
# Static release binaries for the Raspberry Pi targets on a plain Debian machine, without any
# container engine (cross/Cross.toml is for `cross` users with Docker):
#
#   aarch64-unknown-linux-musl      Pi 3, 4, 5 (64-bit OS)
#   armv7-unknown-linux-musleabihf  Pi 2, 3 (32-bit OS)
#   arm-unknown-linux-musleabihf    Pi Zero, Zero W, 1 (ARMv6, VFPv2)
#
# (`build` takes x86_64-unknown-linux-musl too: tests/bench.sh measures that build.)
#
# All three are built by `cargo zigbuild` (zig links them, and compiles ring's C for `tls`) with
# the standard library rebuilt for size (-Zbuild-std, optimize_for_size; the 32-bit targets have
# no prebuilt musl std to download at all), so RUSTC_BOOTSTRAP=1 lets the stable toolchain take
# the -Z flags. Needs: the rust-src component, cargo-zigbuild, and zig (`pip install ziglang`
# or a `zig` on PATH).
#
#   cross/build.sh build TARGET [FEATURES]   one binary: target/pi/TARGET/release/registrator
#                                            (FEATURES: a cargo feature list, or `default`)
#   cross/build.sh sizes [TARGET...]         every feature set of every (given) target, a size
#                                            table in target/pi/sizes.txt, budgets checked
#   cross/build.sh all                       the default build of all three targets
#
# Budgets (aarch64): all features without TLS <= 1 MiB, any single backend <= 700 KiB.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TARGETS=(aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf arm-unknown-linux-musleabihf)
ALL_NO_TLS=consul,consulkv,etcd,skydns2,coredns,zookeeper,file,templates
SINGLE=(consul consulkv etcd skydns2 coredns zookeeper file)
BUDGET_ALL_NO_TLS=$((1024 * 1024))
BUDGET_SINGLE=$((700 * 1024))

die() { printf 'cross/build.sh: %s\n' "$*" >&2; exit 1; }

check_tools() {
    command -v cargo-zigbuild >/dev/null || die "cargo-zigbuild not found (cargo install cargo-zigbuild)"
    if ! command -v zig >/dev/null && ! python3 -m ziglang version >/dev/null 2>&1; then
        die "zig not found (pip install ziglang, or put zig on PATH)"
    fi
    local sysroot
    sysroot=$(rustc --print sysroot)
    [ -d "$sysroot/lib/rustlib/src/rust/library" ] ||
        die "the rust-src component is missing (rustup component add rust-src)"
}

# build TARGET FEATURES: one release binary; prints its path.
build() {
    local target=$1 features=${2:-default}
    # shellcheck disable=SC2054 # the commas are inside -Z values, not between elements
    local args=(--release --target "$target" --target-dir target/pi
        -Zbuild-std=std,panic_abort -Zbuild-std-features=optimize_for_size)
    if [ "$features" != default ]; then
        args+=(--no-default-features --features "$features")
    fi
    # No unwind tables: with panic=abort nothing unwinds, and on x86_64 they were 110 KB of
    # .eh_frame (a panic still prints its message; only a backtrace would need them).
    local rustflags="-C force-unwind-tables=no"
    case $target in
        # musl's own crt objects come from zig, not from the (absent) self-contained copy.
        arm*) rustflags+=" -C link-self-contained=no" ;;
    esac
    # Called in $(...), where set -e does not apply: a failed build must fail the caller.
    RUSTC_BOOTSTRAP=1 RUSTFLAGS="$rustflags" cargo zigbuild -q "${args[@]}" >&2 ||
        die "build of $target ($features) failed"
    echo "target/pi/$target/release/registrator"
}

size_of() { stat -c %s "$1"; }

cmd_sizes() {
    local targets=("$@") fail=0 t f bin n
    [ ${#targets[@]} -gt 0 ] || targets=("${TARGETS[@]}")
    mkdir -p target/pi
    local out=target/pi/sizes.txt
    printf '%-32s %-48s %9s\n' target features bytes | tee "$out"
    for t in "${targets[@]}"; do
        for f in default "$ALL_NO_TLS" "${SINGLE[@]}"; do
            bin=$(build "$t" "$f") || exit 1
            n=$(size_of "$bin")
            local label=$f
            [ "$f" = default ] && label="all, with tls (default)"
            [ "$f" = "$ALL_NO_TLS" ] && label="all, without tls"
            local note=""
            if [ "$t" = aarch64-unknown-linux-musl ]; then
                if [ "$f" = "$ALL_NO_TLS" ] && [ "$n" -gt $BUDGET_ALL_NO_TLS ]; then
                    note="  OVER BUDGET (1 MiB)"
                    fail=1
                elif [[ " ${SINGLE[*]} " == *" $f "* ]] && [ "$n" -gt $BUDGET_SINGLE ]; then
                    note="  OVER BUDGET (700 KiB)"
                    fail=1
                fi
            fi
            printf '%-32s %-48s %9d%s\n' "$t" "$label" "$n" "$note" | tee -a "$out"
        done
    done
    [ $fail = 0 ] || die "a size budget is exceeded (see above)"
}

[ $# -ge 1 ] || { sed -n '2,21p' "$0"; exit 2; }
check_tools
case $1 in
    build)
        [ $# -ge 2 ] || die "build TARGET [FEATURES]"
        build "$2" "${3:-default}" || exit 1
        ;;
    sizes) shift; cmd_sizes "$@" ;;
    all) for t in "${TARGETS[@]}"; do build "$t" default || exit 1; done ;;
    *) die "unknown command $1 (build, sizes, all)" ;;
esac
