#!/usr/bin/env bash
# The trial stack's file checked against the Compose specification's JSON
# schema (the copy check-jsonschema vendors), since no Docker engine runs
# where the tests do.
#
#   ops/compose.sh check [FILE]   validate FILE (default docker-compose.yml);
#                                 installs check-jsonschema (pinned) into a
#                                 virtualenv in the user's cache when missing
set -euo pipefail

VERSION=0.39.0
venv="${XDG_CACHE_HOME:-$HOME/.cache}/opsledger/venv-check-jsonschema-$VERSION"
log() { echo "compose.sh: $*" >&2; }

ensure() {
    [ -x "$venv/bin/check-jsonschema" ] && return 0
    mkdir -p "$(dirname "$venv")"
    exec 9>>"$venv.lock"
    flock 9 2>/dev/null || true
    [ -x "$venv/bin/check-jsonschema" ] && return 0
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
        log "python3's venv module is missing; installing python3-venv"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >&2
        rm -rf "$venv"
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install -q "check-jsonschema==$VERSION" >&2
}

case "${1:-}" in
    check)
        ensure
        file=${2:-docker-compose.yml}
        "$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec "$file"
        ;;
    *)
        sed -n '2,10p' "$0" >&2
        exit 2
        ;;
esac
