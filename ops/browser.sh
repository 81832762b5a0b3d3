#!/usr/bin/env bash
# A headless browser, its WebDriver and PDF tools: for the tests that print
# the HTML reports and those that drive the console.
#
#   ops/browser.sh ensure     install Debian's chromium, chromium-driver and
#                             poppler-utils when missing; print the path of
#                             the chromium binary
#
# Tests call it (and ops/test calls it once before them, so that parallel
# tests never run apt-get at the same time). Installing needs root or sudo.
set -euo pipefail

log() { echo "browser.sh: $*" >&2; }

find_chromium() {
    local c
    for c in chromium chromium-browser google-chrome; do
        if command -v "$c" >/dev/null 2>&1; then
            command -v "$c"
            return 0
        fi
    done
    return 1
}

ensure() {
    if find_chromium >/dev/null && command -v pdftotext >/dev/null 2>&1 \
        && command -v chromedriver >/dev/null 2>&1; then
        find_chromium
        return 0
    fi
    log "chromium, chromedriver or pdftotext missing; installing Debian's chromium, chromium-driver and poppler-utils"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    # One installer at a time, whoever else asks.
    exec 8>>"${TMPDIR:-/tmp}/opsledger-browser-install.lock"
    flock 8 2>/dev/null || true
    if ! { find_chromium >/dev/null && command -v pdftotext >/dev/null 2>&1 \
        && command -v chromedriver >/dev/null 2>&1; }; then
        $sudo apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver poppler-utils >&2
    fi
    find_chromium || { log "chromium still missing after installing it"; exit 1; }
}

case "${1:-}" in
    ensure) ensure ;;
    *)
        sed -n '2,8p' "$0" >&2
        exit 2
        ;;
esac
