#!/bin/sh
# scripts/demo.sh -- set up and build strata, then run the SQL demo: a strata
# table and an ordinary SQLite table side by side.
set -e
cd "$(dirname "$0")/.."
sh scripts/setup.sh
printf '==> running the demo (tool/demo.tcl)\n'
exec tclsh tool/demo.tcl "${1:-demo-data}"
