#!/bin/sh
# scripts/test.sh -- set up, build and run the whole test suite (make check).
# The last line is `N passed, N failed`.
set -e
cd "$(dirname "$0")/.."
sh scripts/setup.sh
printf '==> running the test suite (make check)\n'
exec make --no-print-directory -s check
