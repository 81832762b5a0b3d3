#!/usr/bin/env bash
# A headless browser, its WebDriver and PDF tools: for the tests that print
# the HTML reports and those that drive the console.
#
#   ops/browser.sh ensure     install Debian's chromium, chromium-driver and
#                             poppler-utils when missing; print the path of
#                             the chromium binary
#   ops/browser.sh axe        fetch axe-core (pinned, checked against its
#                             npm integrity hash) into the user's cache
#                             when missing; print the path of axe.min.js
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

# axe-core, the accessibility checker the browser tests inject into each
# page: from the npm registry's tarball (no npm needed), verified.
AXE_VERSION=4.14.1
AXE_SHA512=FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ==

axe() {
    local dir="${XDG_CACHE_HOME:-$HOME/.cache}/opsledger/axe-core-$AXE_VERSION"
    if [ -s "$dir/axe.min.js" ]; then
        echo "$dir/axe.min.js"
        return 0
    fi
    mkdir -p "$dir"
    exec 9>>"$dir.lock"
    flock 9 2>/dev/null || true
    if [ ! -s "$dir/axe.min.js" ]; then
        log "fetching axe-core $AXE_VERSION from the npm registry"
        local tgz="$dir/axe-core.tgz"
        curl -fsSL --retry 3 -o "$tgz" "https://registry.npmjs.org/axe-core/-/axe-core-$AXE_VERSION.tgz"
        local got
        got=$(python3 -c 'import base64,hashlib,sys; print(base64.b64encode(hashlib.sha512(open(sys.argv[1],"rb").read()).digest()).decode())' "$tgz")
        [ "$got" = "$AXE_SHA512" ] || { log "axe-core tarball does not match its integrity hash"; rm -f "$tgz"; exit 1; }
        tar -xzf "$tgz" -C "$dir" package/axe.min.js
        mv "$dir/package/axe.min.js" "$dir/axe.min.js"
        rm -rf "$dir/package" "$tgz"
    fi
    echo "$dir/axe.min.js"
}

case "${1:-}" in
    ensure) ensure ;;
    axe) axe ;;
    *)
        sed -n '2,11p' "$0" >&2
        exit 2
        ;;
esac
