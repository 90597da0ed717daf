#!/usr/bin/env bash
# Create (once) and print the path of the cached virtualenv holding the pinned
# Python packages of python/requirements.txt.  The cache key is the hash of
# that file, so changing a pin makes a fresh environment.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
req="$top/python/requirements.txt"
key=$(sha256sum "$req" | cut -c1-12)
cache="${PETREL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/petrel}"
venv="$cache/venv-$key"
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
    echo "setup_venv: creating $venv (pinned torch/transformers; first time only)" >&2
    rm -rf "$venv"
    mkdir -p "$cache"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip >&2
    "$venv/bin/pip" install --quiet -r "$req" >&2
    touch "$venv/.complete"
fi
echo "$venv"
