#!/bin/sh
# Prints the version the demo region runs (nothing when it runs nothing yet).
set -eu
file="$(dirname "$0")/state/$1"
if [ -f "$file" ]; then cat "$file"; fi
