#!/usr/bin/env bash
# R5 (SPEC §11): escalation timers across a kill of every instance, a restart
# and two instances on one database: each level is mailed once, on time.
# PASS or FAIL with the figures.
exec bash "$(dirname "${BASH_SOURCE[0]}")/drill.sh" r5
