#!/bin/sh
# Installs the Debian (bookworm) packages of one or more sets. Idempotent: one
# dpkg-query call, silent when everything is present already.
#   contrib/install-deps.sh [build]  what `make`, `make run`, `make install` need:
#                                    compiler, pkg-config, the libraries, node-llhttp,
#                                    nodejs (the demo service)
#   contrib/install-deps.sh test     the tools only the test suite uses (t/setup.sh,
#                                    so `make test`, installs them; never `make`)
#   contrib/install-deps.sh bench    the peers `make bench` compares against, wrk and h2load
#   contrib/install-deps.sh fuzz     clang, for the libFuzzer targets (`make fuzz`)
#   contrib/install-deps.sh package  the Debian tooling `make deb` uses
# Several sets may be given: `contrib/install-deps.sh build fuzz`.
set -e
# libsystemd-dev: sd_notify; libnghttp2-dev: HTTP/2 to clients; libc-ares-dev: DNS
# re-resolution of upstreams; libjansson-dev: the admin API's JSON.
BUILD="build-essential pkg-config libev-dev node-llhttp libssl-dev libpcre2-dev
       libluajit-5.1-dev zlib1g-dev libbrotli-dev libzstd-dev libhiredis-dev liburing-dev
       libcrypt-dev libnghttp2-dev libc-ares-dev libsystemd-dev libjansson-dev nodejs"
TEST="perl curl openssl gzip brotli zstd procps iproute2 valgrind redis-server wrk
      chromium chromium-driver prometheus nghttp2-client systemd man-db groff-base logrotate
       dpkg-dev debhelper fakeroot lintian nginx-light dnsmasq-base pebble
      libio-socket-ssl-perl"
BENCH="nginx-light haproxy wrk nghttp2-client"
FUZZ="clang"
PACKAGE="dpkg-dev debhelper fakeroot lintian"

[ $# -gt 0 ] || set -- build
PKGS=""
for set in "$@"; do
    case "$set" in
    build) PKGS="$PKGS $BUILD" ;;
    test)
        PKGS="$PKGS $TEST"
        # Debian's nodejs comes without npm (t/setup.sh uses it); NodeSource's has it
        command -v npm >/dev/null 2>&1 || PKGS="$PKGS npm"
        ;;
    bench) PKGS="$PKGS $BENCH" ;;
    fuzz) PKGS="$PKGS $FUZZ" ;;
    package) PKGS="$PKGS $PACKAGE" ;;
    *)
        echo "install-deps: unknown set \"$set\" (build, test, bench, fuzz, package)" >&2
        exit 2
        ;;
    esac
done
if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "install-deps: not a Debian system: install the equivalents of$PKGS yourself" >&2
    exit 0
fi
# one query for all: "name status" per line; a package dpkg never heard of is absent
installed=$(dpkg-query -W -f='${Package} ${Status}\n' $PKGS 2>/dev/null |
    awk '$NF == "installed" && $(NF-1) == "ok" { print $1 }')
missing=""
for p in $PKGS; do
    case " $missing " in *" $p "*) continue ;; esac
    echo "$installed" | grep -qx "$p" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "install-deps: installing$missing"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
# another apt run (a second make, a colleague's) holds the lock: wait for it
LOCK="-o DPkg::Lock::Timeout=600"
$SUDO apt-get $LOCK update -qq
# policy-rc.d keeps package scripts from starting nginx/redis/haproxy services:
# the tests and the benchmark start their own instances on free ports.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get $LOCK install -y -qq --no-install-recommends $missing >/dev/null
