#!/bin/sh
# Demo health check: a region is healthy when it runs the version being deployed, unless
# SHIPGATE_DEMO_FAIL names it: a comma-separated list of `region` (always unhealthy) or
# `region@version` (unhealthy only while it runs that version, so a rollback verifies), e.g.
# SHIPGATE_DEMO_FAIL=ewr@demo2.
set -eu
region="$1"
expected="$2"
file="$(dirname "$0")/state/$region"
actual="$(cat "$file" 2>/dev/null || true)"
case ",${SHIPGATE_DEMO_FAIL:-}," in
  *",$region,"*|*",$region@$actual,"*) echo "$region: HTTP 503 (SHIPGATE_DEMO_FAIL)" >&2; exit 1 ;;
esac
if [ "$actual" != "$expected" ]; then
  echo "$region runs '$actual', expected '$expected'" >&2
  exit 1
fi
echo "$region healthy at $actual"
