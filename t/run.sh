#!/bin/sh
# The whole suite, as `make test` runs it: t/run.sh WAITING... -- REST...
# The WAITING files spend their time waiting on timers (OCSP nextUpdate,
# DNS TTLs, ACME renewal) with little CPU: they run one after another in a
# prove of their own beside `prove -j2` of the REST, so they do not hold one
# of its two slots for minutes. Their output follows the other run's. Exits
# non-zero when either run fails.
set -u
waiting=
while [ $# -gt 0 ] && [ "$1" != -- ]; do
    waiting="$waiting $1"
    shift
done
[ $# -gt 0 ] && shift
out=$(mktemp)
trap 'rm -f "$out"' EXIT
prove $waiting >"$out" 2>&1 &
bg=$!
prove -j2 "$@"
rc=$?
wait "$bg"
brc=$?
echo "---- the waiting files:$waiting"
cat "$out"
[ "$rc" -eq 0 ] && [ "$brc" -eq 0 ]
