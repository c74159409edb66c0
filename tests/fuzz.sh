#!/usr/bin/env bash
# Fuzzes the pure parts of the daemon with cargo-fuzz (libFuzzer): the HTTP response decoder
# (targets `chunked` and `head`), the /events stream decoder (`events`), the container to
# services mapping (`service`), the tag templates (`template`) and the swarm answers and swarm
# services mapping (`swarm`). The targets and their
# invariants are described at the top of each tests/fuzz/fuzz_targets/<target>.rs.
#
#   tests/fuzz.sh [SECONDS]             each target for SECONDS (default 600), one after another
#   tests/fuzz.sh SECONDS TARGET...     only those targets
#
# Needs the nightly toolchain and cargo-fuzz, and fails (never skips) without them:
#   rustup toolchain install nightly --profile minimal
#   cargo install --locked cargo-fuzz
#
# Each run starts from tests/fuzz/seeds/<target>/ (committed) copied into the working corpus
# tests/fuzz/corpus/<target>/ (git-ignored, kept between runs so they build on each other).
# Builds go to tests/fuzz/target/, logs to tests/fuzz/target/fuzz-logs/<target>.log, and
# anything found to tests/fuzz/artifacts/<target>/ (crash-*, timeout-*, oom-*), all ignored.
# Reproduce a finding with
#   cargo +nightly fuzz run --fuzz-dir tests/fuzz <target> tests/fuzz/artifacts/<target>/<file>
#
# Prints one line per target: seconds, total executions, executions per second, the corpus
# (files in the corpus directory, which keeps every input ever added; corp: the inputs/bytes
# libFuzzer's live corpus holds at the end), libFuzzer's coverage counters (cov, ft) from its
# last status line, and the finding. Each run overwrites the previous run's logs.
# Exits non-zero when any target found a crash, timeout or out-of-memory input.
#
# FUZZ_KNOWN=tag,tag (or `all`) lets the runs go on past invariant checks that failed before
# and are already reported (the tags are the `[tag]` in a check's panic message); unset, every
# broken invariant is a finding. Fuzzers and builds run under `nice -n 10`, one at a time
# (libFuzzer's default: one process, no -jobs/-workers).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage="usage: tests/fuzz.sh [SECONDS [TARGET...]]   (targets: chunked head events service template swarm)"
seconds=${1:-600}
[[ $seconds =~ ^[1-9][0-9]*$ ]] || { echo "$usage" >&2; exit 2; }
targets=(chunked head events service template swarm)
if (( $# > 1 )); then
    shift
    for t in "$@"; do
        [[ " ${targets[*]} " == *" $t "* ]] || { echo "$usage" >&2; exit 2; }
    done
    targets=("$@")
fi
fuzz_dir=tests/fuzz

export PATH=$HOME/.cargo/bin:$PATH
# cargo-fuzz builds with -Zsanitizer=address: nightly. FUZZ_TOOLCHAIN=stable uses the stable
# toolchain with RUSTC_BOOTSTRAP=1 instead (cargo-fuzz supports that; the sanitizer runtime
# ships with every channel), for machines where no nightly can be installed.
command -v cargo >/dev/null || { echo "fuzz.sh: cargo is not installed" >&2; exit 1; }
toolchain=${FUZZ_TOOLCHAIN:-nightly}
[[ $toolchain == nightly* ]] || export RUSTC_BOOTSTRAP=1
if ! cargo "+$toolchain" --version >/dev/null 2>&1; then
    echo "fuzz.sh: the $toolchain Rust toolchain is missing (cargo-fuzz needs nightly)." >&2
    echo "    install it with: rustup toolchain install nightly --profile minimal" >&2
    echo "    (or run with FUZZ_TOOLCHAIN=stable: the stable toolchain with RUSTC_BOOTSTRAP=1)" >&2
    exit 1
fi
if ! command -v cargo-fuzz >/dev/null || ! cargo "+$toolchain" fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz is not installed." >&2
    echo "    install it with: cargo install --locked cargo-fuzz" >&2
    exit 1
fi

echo "=== building the fuzz targets ($(cargo "+$toolchain" fuzz --version), $(cargo "+$toolchain" --version))"
nice -n 10 cargo "+$toolchain" fuzz build --fuzz-dir "$fuzz_dir"

logs=$fuzz_dir/target/fuzz-logs
mkdir -p "$logs"
summary=()
failed=0
for t in "${targets[@]}"; do
    corpus=$fuzz_dir/corpus/$t
    artifacts=$fuzz_dir/artifacts/$t
    mkdir -p "$corpus" "$artifacts"
    cp "$fuzz_dir"/seeds/"$t"/* "$corpus"/
    log=$logs/$t.log
    before=$(find "$artifacts" -type f | sort)
    echo "=== $t: ${seconds}s from $(find "$corpus" -type f | wc -l) inputs (log: $log)"
    rc=0
    nice -n 10 cargo "+$toolchain" fuzz run --fuzz-dir "$fuzz_dir" "$t" "$corpus" -- \
        -max_total_time="$seconds" -rss_limit_mb=1024 -timeout=10 -print_final_stats=1 \
        >"$log" 2>&1 || rc=$?

    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    status=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
    [[ -n $execs ]] || execs=$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$status")
    [[ -n $rate ]] || rate=$(sed -nE 's/.*exec\/s: ([0-9]+).*/\1/p' <<<"$status")
    corp=$(sed -nE 's/.* corp: ([0-9]+\/[0-9]+[a-zA-Z]*).*/\1/p' <<<"$status")
    cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$status")
    ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$status")
    files=$(find "$corpus" -type f | wc -l)

    new=$(comm -13 <(echo "$before") <(find "$artifacts" -type f | sort) | grep . || true)
    finding=none
    if [[ -n $new ]]; then
        finding=$(for f in $new; do basename "$f" | sed -E 's/-[0-9a-f]+$//'; done | sort -u | paste -sd, -)
    elif (( rc != 0 )); then
        finding="error(rc=$rc)"
    fi
    if [[ $finding != none ]]; then
        failed=$((failed + 1))
        echo "--- $t found: $finding"
        # The panic message is the line after "panicked at".
        awk '/panicked at/ { print; getline; print; next }
             /Test unit written to|^SUMMARY|ALARM|out-of-memory/' "$log" | head -n 20
        for f in $new; do
            echo "    $f ($(stat -c %s "$f") bytes): $(head -c 64 "$f" | od -An -tx1 | tr -d ' \n')$( (( $(stat -c %s "$f") > 64 )) && echo ...)"
        done
        echo "    (full output: $log)"
    fi
    summary+=("$(printf '%-8s %7s %12s %8s %7s %13s %6s %7s  %s' "$t" "$seconds" "${execs:-?}" \
        "${rate:-?}" "$files" "${corp:-?}" "${cov:-?}" "${ft:-?}" "$finding")")
done

echo
echo "=== fuzz summary (${seconds}s per target)"
printf '%-8s %7s %12s %8s %7s %13s %6s %7s  %s\n' target seconds executions exec/s files corp cov ft finding
printf '%s\n' "${summary[@]}"
echo "fuzz: $(( ${#targets[@]} - failed )) passed, $failed failed"
(( failed == 0 ))
