#!/bin/sh
# Test setup (`make test` runs it; so does t/lib/Tollgate/Test.pm before a
# test that needs npm packages). Idempotent and quiet:
# - the tools only the tests use (`contrib/install-deps.sh test`: curl,
#   chromium, prometheus, valgrind, redis-server, wrk, nghttp2-client,
#   man-db and groff for the man page checks, ...),
#   installed when one of their commands is missing; `make` never installs them
# - the npm packages that test upstreams use (t/package.json), into
#   t/node_modules, when node_modules is missing or package.json /
#   package-lock.json changed since the last install; npm's output is printed
#   only when npm fails.
set -e
cd "$(dirname "$0")"
for c in perl curl openssl gzip brotli zstd ps ip valgrind redis-server wrk chromium \
         chromedriver promtool nghttp systemd-analyze npm man groff logrotate \
         dpkg-buildpackage fakeroot lintian nginx dnsmasq pebble; do
    if ! command -v "$c" >/dev/null 2>&1; then
        ../contrib/install-deps.sh test
        break
    fi
done
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
