#!/usr/bin/env bash
# R4 (SPEC §11): the SMTP server down while incidents open: every notice is
# tried, fails and waits; once it is back, every notice is delivered, none
# twice. PASS or FAIL with the figures.
exec bash "$(dirname "${BASH_SOURCE[0]}")/drill.sh" r4
