#!/usr/bin/env bash
# R4 (SPEC §11): the SMTP server down while incidents open: every notice is
# tried, fails and waits; once it is back, every notice is delivered, none
# twice. PASS or FAIL with the figures.
#
#   ops/drills/r4.sh            down until each notice has failed twice (as in ops/test)
#   ops/drills/r4.sh MINUTES    down for that many minutes
minutes=${1:-0}
case "$minutes" in
    '' | *[!0-9]*) echo "usage: ops/drills/r4.sh [MINUTES]" >&2; exit 2 ;;
esac
OPSLEDGER_R4_OUTAGE_S=$((minutes * 60)) exec bash "$(dirname "${BASH_SOURCE[0]}")/drill.sh" r4
