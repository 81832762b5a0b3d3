#!/usr/bin/env bash
# A real SMTP server for the tests, without ceremony.
#
#   ops/smtp.sh ensure            make sure a Python with aiosmtpd is at hand (installing it
#                                 if missing); print the path of that interpreter
#   ops/smtp.sh sink PORT DIR     run ops/smtp-sink.py with it in the foreground
#
# Where the Python comes from, first that works: python3 on PATH; /usr/bin/python3;
# a venv made earlier in target/smtp-venv; as root with apt-get, Debian's
# python3-aiosmtpd; else a new venv in target/smtp-venv with aiosmtpd from PyPI.
# Everything but the interpreter's path goes to stderr. Installs are serialised
# with flock, since test processes may ask at the same time.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$repo/target/smtp-venv

log() { echo "smtp.sh: $*" >&2; }

has_aiosmtpd() {
    [ -n "$1" ] && "$1" -c 'import aiosmtpd' >/dev/null 2>&1
}

# The checks that need no install; prints the interpreter and succeeds if one is found.
find_python() {
    local py
    py=$(command -v python3 2>/dev/null || true)
    if has_aiosmtpd "$py"; then echo "$py"; return 0; fi
    if has_aiosmtpd /usr/bin/python3; then echo /usr/bin/python3; return 0; fi
    if has_aiosmtpd "$venv/bin/python"; then echo "$venv/bin/python"; return 0; fi
    return 1
}

apt_install() {
    [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1 || return 1
    log "installing Debian's python3-aiosmtpd"
    local out
    out=$(mktemp)
    if ! apt_get install -y -qq --no-install-recommends python3-aiosmtpd >"$out" 2>&1; then
        log "apt-get install failed; updating the package lists and trying again"
        if ! { apt_get update -qq && apt_get install -y -qq --no-install-recommends python3-aiosmtpd; } >"$out" 2>&1; then
            tail -n 20 "$out" >&2
            rm -f "$out"
            return 1
        fi
    fi
    rm -f "$out"
    has_aiosmtpd /usr/bin/python3
}

apt_get() { DEBIAN_FRONTEND=noninteractive apt-get "$@"; }

venv_install() {
    local py
    py=$(command -v python3 2>/dev/null || command -v /usr/bin/python3 2>/dev/null || true)
    [ -n "$py" ] || { log "no python3 to make a venv with"; return 1; }
    log "making a venv in $venv and installing aiosmtpd from PyPI"
    rm -rf "$venv"
    "$py" -m venv "$venv" >&2 || { log "python3 -m venv failed (on Debian: apt-get install python3-venv)"; return 1; }
    "$venv/bin/python" -m pip install -q --disable-pip-version-check aiosmtpd >&2 || return 1
    has_aiosmtpd "$venv/bin/python"
}

ensure() {
    if find_python; then return 0; fi
    mkdir -p "$repo/target"
    local lock=$repo/target/smtp-ensure.lock
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$lock"
        flock 9
    fi
    # Another process may have installed it while this one waited for the lock.
    if find_python; then return 0; fi
    if apt_install; then echo /usr/bin/python3; return 0; fi
    if venv_install; then echo "$venv/bin/python"; return 0; fi
    log "could not get a Python with aiosmtpd"
    exit 1
}

cmd=${1:-}
case "$cmd" in
    ensure)
        ensure
        ;;
    sink)
        port=${2:?usage: ops/smtp.sh sink PORT DIR}
        dir=${3:?usage: ops/smtp.sh sink PORT DIR}
        py=$(ensure)
        exec "$py" "$repo/ops/smtp-sink.py" "$port" "$dir"
        ;;
    *)
        sed -n '2,12p' "$0" >&2
        exit 2
        ;;
esac
