#!/usr/bin/env bash
# Runs a drill (SPEC §11) by name, r1 or r2: its test in
# services/server/tests/drills.rs against a real service process and
# PostgreSQL. Prints PASS or FAIL with the drill's figures. Needs a
# PostgreSQL test cluster: it starts one (ops/pg.sh) unless
# OPSLEDGER_TEST_PGHOST names one.
set -uo pipefail
name=${1:?usage: ops/drills/drill.sh r1|r2}
upper=$(printf '%s' "$name" | tr '[:lower:]' '[:upper:]')
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
if [ -z "${OPSLEDGER_TEST_PGHOST:-}" ]; then
    pgdir=$(mktemp -d "${TMPDIR:-/tmp}/opsledger-drill-XXXXXX")
    trap 'bash ops/pg.sh stop "$pgdir"' EXIT
    bash ops/pg.sh ephemeral "$pgdir" >/dev/null
    export OPSLEDGER_TEST_PGHOST=$pgdir
fi
out=$(cargo test -q -p opsledger-server --test drills "${name}_" -- --nocapture 2>&1)
status=$?
figures=$(printf '%s\n' "$out" | grep "^$upper figures" || true)
if [ $status -eq 0 ] && [ -n "$figures" ]; then
    echo "$upper PASS: ${figures#"$upper figures: "}"
else
    printf '%s\n' "$out" | tail -20 >&2
    echo "$upper FAIL"
    exit 1
fi
