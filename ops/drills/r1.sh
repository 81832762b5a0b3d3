#!/usr/bin/env bash
# R1 (SPEC §11): `opsledger serve` killed (SIGKILL) under ingest by 16
# senders, then started again: every alert answered 2xx before the kill is in
# the log, and the alerts read model converges to it. PASS or FAIL with the
# figures.
exec bash "$(dirname "${BASH_SOURCE[0]}")/drill.sh" r1
