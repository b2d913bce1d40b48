#!/bin/sh
# Installs every package Tollgate needs to build, test and benchmark, on Debian
# bookworm. Idempotent and silent when everything is present already.
#   contrib/install-deps.sh          build + test dependencies
#   contrib/install-deps.sh bench    also the peers the benchmark compares against
set -e
PKGS="build-essential pkg-config clang libev-dev node-llhttp libssl-dev openssl libpcre2-dev
      libluajit-5.1-dev zlib1g-dev libbrotli-dev libzstd-dev libhiredis-dev liburing-dev redis-server
      perl curl nodejs wrk gzip brotli zstd procps iproute2 valgrind
      libcrypt-dev chromium chromium-driver prometheus"
if [ "$1" = "bench" ]; then
    PKGS="$PKGS nginx-light haproxy"
fi
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "install-deps: installing$missing"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# policy-rc.d keeps package scripts from starting nginx/redis/haproxy services:
# the tests and the benchmark start their own instances on free ports.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
