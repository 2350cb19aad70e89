#!/bin/sh
# run-tests.sh BUILDDIR SRCDIR [soak|valgrind]
# Runs every C test program and the Tcl and Python suites, and ends with the
# total as `N passed, N failed`. Each part prints its own last line in that
# form; a part that crashes or prints no such line counts as one failure.
builddir=$1
srcdir=$2
mode=${3:-}
pass=0
fail=0
failed_parts=""
export STRATA_TEST_TMP="$builddir/test-tmp"
mkdir -p "$STRATA_TEST_TMP"

add_result() { # $1 = name, $2 = log file, $3 = exit code
  line=$(grep -aE '^[0-9]+ passed, [0-9]+ failed' "$2" | tail -n 1)
  if [ -z "$line" ]; then
    echo "FAIL $1: no result line (exit code $3); last output:"
    tail -n 20 "$2" | sed 's/^/    /'
    fail=$((fail + 1))
    failed_parts="$failed_parts $1"
    return
  fi
  p=$(echo "$line" | sed -E 's/^([0-9]+) passed, ([0-9]+) failed.*/\1/')
  f=$(echo "$line" | sed -E 's/^([0-9]+) passed, ([0-9]+) failed.*/\2/')
  if [ "$3" -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "FAIL $1: exit code $3 with no failed test; last output:"
    tail -n 20 "$2" | sed 's/^/    /'
    f=1
  fi
  pass=$((pass + p))
  fail=$((fail + f))
  [ "$f" -ne 0 ] && failed_parts="$failed_parts $1"
  printf '%-28s %s\n' "$1" "$line"
  if [ "$f" -ne 0 ]; then grep -aE '^(FAIL|  )' "$2" | head -n 40 | sed 's/^/    /'; fi
}

logdir="$builddir/test-tmp/logs"
mkdir -p "$logdir"

# Under valgrind the C tests shrink their big loops (test_valgrind()).
[ "$mode" = valgrind ] && export STRATA_VALGRIND=1

for t in util memtable log block bloom cache sstable version merge db txn compact model crash fault corrupt; do
  prog="$builddir/test/unit/test_$t"
  log="$logdir/test_$t.log"
  if [ ! -x "$prog" ]; then
    echo "FAIL test_$t: not built"
    fail=$((fail + 1)); failed_parts="$failed_parts test_$t"
    continue
  fi
  ${STRATA_TEST_WRAPPER:-} "$prog" >"$log" 2>&1
  add_result "test_$t" "$log" $?
done

# SQL surface: Tcl tests through test/tester.tcl, and a Python binding check.
ext="$builddir/.libs/strata.so"
if [ -f "$srcdir/test/all.tcl" ]; then
  log="$logdir/tcl.log"
  if [ -n "${STRATA_ASAN:-}" ]; then
    LD_PRELOAD="$(${CC:-gcc} -print-file-name=libasan.so) $(${CC:-gcc} -print-file-name=libubsan.so)" \
      ASAN_OPTIONS=detect_leaks=0 STRATA_EXT="$ext" "${TCLSH:-tclsh}" "$srcdir/test/all.tcl" >"$log" 2>&1
  elif [ "$mode" = valgrind ]; then
    STRATA_EXT="$ext" STRATA_VALGRIND=1 "${TCLSH:-tclsh}" "$srcdir/test/all.tcl" >"$log" 2>&1
  else
    STRATA_EXT="$ext" "${TCLSH:-tclsh}" "$srcdir/test/all.tcl" >"$log" 2>&1
  fi
  add_result "tcl" "$log" $?
fi
if [ -f "$srcdir/test/python_load.py" ] && [ -z "${STRATA_ASAN:-}" ] && [ "$mode" != valgrind ]; then
  log="$logdir/python.log"
  STRATA_EXT="$ext" "${PYTHON3:-python3}" "$srcdir/test/python_load.py" >"$log" 2>&1
  add_result "python" "$log" $?
fi

[ -n "$failed_parts" ] && echo "failing parts:$failed_parts (logs in $logdir)"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
