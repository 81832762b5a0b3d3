#!/usr/bin/env bash
# R1 (SPEC §11): `opsledger serve` killed (SIGKILL) under ingest by 16
# senders, then started again: every alert answered 2xx before the kill must
# be in the log, and the alerts read model must converge to it. Prints PASS
# or FAIL with the figures. Needs a PostgreSQL test cluster: it starts one
# (ops/pg.sh) unless OPSLEDGER_TEST_PGHOST names one.
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
if [ -z "${OPSLEDGER_TEST_PGHOST:-}" ]; then
    pgdir=$(mktemp -d "${TMPDIR:-/tmp}/opsledger-drill-XXXXXX")
    trap 'bash ops/pg.sh stop "$pgdir"' EXIT
    bash ops/pg.sh ephemeral "$pgdir" >/dev/null
    export OPSLEDGER_TEST_PGHOST=$pgdir
fi
out=$(cargo test -q -p opsledger-server --test drills r1_ -- --nocapture 2>&1)
status=$?
figures=$(printf '%s\n' "$out" | grep '^R1 figures' || true)
if [ $status -eq 0 ]; then
    echo "R1 PASS: ${figures#R1 figures: }"
else
    printf '%s\n' "$out" | tail -20 >&2
    echo "R1 FAIL"
    exit 1
fi
