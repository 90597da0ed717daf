#!/usr/bin/env bash
# Install the Debian packages petrel builds against.  Runs apt-get when root;
# otherwise prints the exact command to run.  Called by `make` when a
# dependency is missing.
set -euo pipefail
pkgs="build-essential cmake pkg-config libjansson-dev libpcre2-dev libutf8proc-dev zlib1g-dev python3 python3-venv"
missing=""
for p in $pkgs; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -z "$missing" ]; then exit 0; fi
if [ "$(id -u)" = 0 ]; then
    echo "install_deps: apt-get install$missing" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing >&2 \
        || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing >&2; }
else
    echo "petrel needs these Debian packages:$missing" >&2
    echo "run: sudo apt-get install -y$missing" >&2
    exit 1
fi
