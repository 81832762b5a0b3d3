#!/usr/bin/env bash
# The deployment manifests checked without a cluster: the Kubernetes kinds
# against the API's schemas (kubernetes-validate, strict: no unknown field),
# the CloudNativePG Cluster against its CRD's schema (schemas/, taken from
# cloudnative-pg's config/crd/bases at the commit its description names).
#
#   ops/deploy/check.sh [DIR]   check the manifests in DIR (default: this
#                               folder); installs the checkers (pinned) into a
#                               virtualenv in the user's cache when missing
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dir=${1:-$here}
venv="${XDG_CACHE_HOME:-$HOME/.cache}/opsledger/venv-deploy-check"
log() { echo "check.sh: $*" >&2; }

if [ ! -x "$venv/bin/kubernetes-validate" ] || [ ! -x "$venv/bin/check-jsonschema" ]; then
    mkdir -p "$(dirname "$venv")"
    exec 9>>"$venv.lock"
    flock 9 2>/dev/null || true
    if [ ! -x "$venv/bin/kubernetes-validate" ] || [ ! -x "$venv/bin/check-jsonschema" ]; then
        if ! python3 -m venv "$venv" >/dev/null 2>&1; then
            log "python3's venv module is missing; installing python3-venv"
            sudo=""
            [ "$(id -u)" -eq 0 ] || sudo="sudo"
            $sudo apt-get update -qq >&2
            DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >&2
            rm -rf "$venv"
            python3 -m venv "$venv"
        fi
        "$venv/bin/pip" install -q "kubernetes-validate==1.37.0" "check-jsonschema==0.39.0" >&2
    fi
fi

"$venv/bin/kubernetes-validate" --strict --quiet "$dir/opsledger.yaml" "$dir/secret.example.yaml"
"$venv/bin/check-jsonschema" --schemafile "$here/schemas/cnpg-cluster-v1.json" "$dir/postgres.yaml"
