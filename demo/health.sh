#!/bin/sh
# Demo health check: a region is healthy when it runs the version being deployed, unless it is
# named in SHIPGATE_DEMO_FAIL (a comma-separated list of regions, e.g. SHIPGATE_DEMO_FAIL=ewr).
set -eu
region="$1"
expected="$2"
file="$(dirname "$0")/state/$region"
case ",${SHIPGATE_DEMO_FAIL:-}," in
  *",$region,"*) echo "$region: HTTP 503 (SHIPGATE_DEMO_FAIL)" >&2; exit 1 ;;
esac
actual="$(cat "$file" 2>/dev/null || true)"
if [ "$actual" != "$expected" ]; then
  echo "$region runs '$actual', expected '$expected'" >&2
  exit 1
fi
echo "$region healthy at $actual"
