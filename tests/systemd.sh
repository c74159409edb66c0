#!/usr/bin/env bash
# Checks the systemd unit the README tells Raspberry Pi users to install,
# cross/systemd/registrator.service, with `systemd-analyze verify`: unknown or misspelt keys,
# bad values, deprecated settings, a missing binary. verify prints those as warnings and may
# still exit 0, so any output at all fails the check.
#
# verify also checks that ExecStart's binary exists, and the unit names the installed path,
# /usr/local/bin/registrator. So the check runs on a copy of the unit in a temp dir in which only
# that path is replaced by BINARY's absolute path, and first makes sure that the copy differs
# from the shipped unit in nothing else (what is verified is the unit that ships).
#
#   tests/systemd.sh [BINARY]     (default target/release/registrator; needs systemd-analyze,
#                                  Debian's `systemd`; no root, no running systemd)
set -euo pipefail

UNIT=cross/systemd/registrator.service
INSTALLED=/usr/local/bin/registrator

fail() { printf 'tests/systemd.sh: FAIL: %s\n' "$*" >&2; exit 1; }

# BINARY relative to where the script is called from; the default relative to the repository.
bin=${1:-}
if [ -n "$bin" ]; then
    bin=$(realpath -e -- "$bin" 2>/dev/null) || fail "$1 does not exist"
fi
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -z "$bin" ]; then
    bin=$(realpath -e target/release/registrator 2>/dev/null) ||
        fail "no target/release/registrator (cargo build --release, or give a binary's path)"
fi
if [ ! -f "$bin" ] || [ ! -x "$bin" ]; then
    fail "$bin is not an executable file"
fi

command -v systemd-analyze >/dev/null || fail "systemd-analyze not found (apt-get install systemd)"
[ -f "$UNIT" ] || fail "no $UNIT"
# ExecStart's path goes through systemd's quoting and %-specifiers: keep to plain characters.
[[ $bin =~ ^/[A-Za-z0-9/._+-]+$ ]] ||
    fail "binary path $bin has characters systemd would read as quoting or specifiers"

# The shipped unit: exactly one ExecStart, of the installed binary, and a final newline.
mapfile -t execs < <(grep '^ExecStart=' "$UNIT")
[ ${#execs[@]} -eq 1 ] || fail "$UNIT: ${#execs[@]} ExecStart= lines, expected 1"
case ${execs[0]} in
    "ExecStart=$INSTALLED" | "ExecStart=$INSTALLED "*) ;;
    *) fail "$UNIT: ExecStart does not run $INSTALLED: ${execs[0]}" ;;
esac
[ -z "$(tail -c 1 "$UNIT")" ] || fail "$UNIT: no newline at the end"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tested=$tmp/registrator.service

# The copy: ExecStart's path replaced, every other byte as shipped.
while IFS= read -r line; do
    if [[ $line == "ExecStart=$INSTALLED"* ]]; then
        line="ExecStart=$bin${line#"ExecStart=$INSTALLED"}"
    fi
    printf '%s\n' "$line"
done <"$UNIT" >"$tested"

# Checked independently of how it was made: one line differs, and putting the installed path
# back into it gives the shipped unit byte for byte.
changed=$(diff "$UNIT" "$tested" | grep -c '^[<>]' || true)
[ "$changed" -eq 2 ] || fail "the tested copy differs from $UNIT in more than the ExecStart line"
restored=$tmp/restored
sed "s|^ExecStart=$bin|ExecStart=$INSTALLED|" "$tested" >"$restored"
cmp -s "$UNIT" "$restored" || fail "the tested copy is not $UNIT with only ExecStart's path replaced"
echo "verifying $UNIT with ExecStart=$bin"

# Warnings and errors are logged at warning level and up; pin the level so the environment
# can neither hide them nor add debug lines.
status=0
out=$(SYSTEMD_LOG_LEVEL=info systemd-analyze verify "$tested" 2>&1) || status=$?
if [ -n "$out" ] || [ $status -ne 0 ]; then
    printf '%s\n' "$out" >&2
    fail "systemd-analyze verify $UNIT: exit $status, $(printf '%s\n' "$out" | grep -c .) lines of output"
fi
echo "systemd-analyze verify: no warnings, no errors"

# For information only: systemd's own rating of the sandbox (systemd 250 and later).
if score=$(systemd-analyze security --offline=true "$tested" 2>/dev/null | tail -n 1); then
    [ -z "$score" ] || echo "systemd-analyze security: ${score#→ }"
fi
echo "tests/systemd.sh: ok"
