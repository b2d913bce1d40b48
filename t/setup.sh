#!/bin/sh
# Installs the npm packages that test upstreams use (t/package.json) into
# t/node_modules. Idempotent and quiet: it runs npm only when node_modules is
# missing or package.json / package-lock.json changed since the last install,
# and prints npm's output only when npm fails.
set -e
cd "$(dirname "$0")"
stamp=node_modules/.tollgate-setup
if [ -f "$stamp" ] && [ ! package.json -nt "$stamp" ] && [ ! package-lock.json -nt "$stamp" ]; then
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "t/setup.sh: npm not found (contrib/install-deps.sh installs nodejs)" >&2
    exit 1
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
if ! npm install --no-audit --no-fund --loglevel=error >"$out" 2>&1; then
    cat "$out" >&2
    echo "t/setup.sh: npm install failed" >&2
    exit 1
fi
touch "$stamp"
