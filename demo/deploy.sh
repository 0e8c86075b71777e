#!/bin/sh
# Demo "platform": deploying a version to a region writes it to demo/state/<region>.
# Set SHIPGATE_DEMO_SLOW=<seconds> to make each deploy take longer.
set -eu
region="$1"
version="$2"
state_dir="$(dirname "$0")/state"
mkdir -p "$state_dir"
echo "deploying $SHIPGATE_APP $version to $region (stage ${SHIPGATE_STAGE:-manual})"
sleep "${SHIPGATE_DEMO_SLOW:-1}"
printf '%s\n' "$version" > "$state_dir/$region.tmp"
mv "$state_dir/$region.tmp" "$state_dir/$region"
echo "$region now runs $version"
