#!/usr/bin/env bash
# R2 (SPEC §11): PostgreSQL stopped for 3 s and started again under load by 8
# senders: meanwhile 503 with Retry-After and nothing else, full service
# within 5 s of its return, the process never down, every 2xx in the log.
# PASS or FAIL with the figures.
exec bash "$(dirname "${BASH_SOURCE[0]}")/drill.sh" r2
