#!/usr/bin/env bash
# Runs a drill (SPEC §11) by name, r1, r2, r4 or r5: its test against real
# service processes, PostgreSQL and SMTP. Prints PASS or FAIL with the
# drill's figures. Needs a PostgreSQL test cluster: it starts one
# (ops/pg.sh) unless OPSLEDGER_TEST_PGHOST names one.
set -uo pipefail
name=${1:?usage: ops/drills/drill.sh r1|r2|r4|r5}
upper=$(printf '%s' "$name" | tr '[:lower:]' '[:upper:]')
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
if [ -z "${OPSLEDGER_TEST_PGHOST:-}" ]; then
    pgdir=$(mktemp -d "${TMPDIR:-/tmp}/opsledger-drill-XXXXXX")
    trap 'bash ops/pg.sh stop "$pgdir"' EXIT
    bash ops/pg.sh ephemeral "$pgdir" >/dev/null
    export OPSLEDGER_TEST_PGHOST=$pgdir
fi
case "$name" in
    r1 | r2) test=(-p opsledger-server --test drills "${name}_") ;;
    r4) test=(-p opsledger-tests --test integration notifications::mail_waits_out_a_down_server) ;;
    r5) test=(-p opsledger-server --test escalation two_levels_are_mailed_on_time) ;;
    *) echo "no drill $name" >&2; exit 2 ;;
esac
out=$(cargo test -q "${test[@]}" -- --nocapture 2>&1)
status=$?
figures=$(printf '%s\n' "$out" | grep "^$upper figures" || true)
if [ $status -eq 0 ] && [ -n "$figures" ]; then
    echo "$upper PASS: ${figures#"$upper figures: "}"
else
    printf '%s\n' "$out" | tail -20 >&2
    echo "$upper FAIL"
    exit 1
fi
