# tester.tcl -- the harness every test/*.test file sources.
#
# A test file does:
#
#     source [file join [file dirname [info script]] tester.tcl]
#     reset_db
#     do_execsql_test create-1.1 { CREATE VIRTUAL TABLE ... } {}
#     ...
#     finish_test
#
# and ends by printing `N passed, N failed` (exit status 1 if any failed).
#
# The extension comes from $env(STRATA_EXT) (default: ../.libs/strata.so next
# to this file). Each file works in its own scratch directory under
# $env(STRATA_TEST_TMP) (default /tmp), removed at the start of the run.
#
# Commands:
#   reset_db                  close every handle, empty the scratch dir, open
#                             `db` on test.db with the extension loaded
#   sqlite_open H FILE        open handle H on FILE with the extension loaded
#   do_test ID SCRIPT EXP     SCRIPT's result must equal EXP
#   do_execsql_test ID SQL EXP   `db eval SQL` must equal EXP (as lists)
#   do_catchsql_test ID SQL EXP  {0 result} or {1 message} must equal EXP
#   catchsql SQL ?H?          {0 result} or {1 message}
#   errcode ?H?               the (primary) error code of H's last error
#   stat TABLE NAME ?H?       a counter from strata_stats(TABLE)
#   scratch NAME              a path in the scratch directory
#   test_seed WHAT            seed rand() from $env(STRATA_SEED) or the clock, print it
#   finish_test               print the summary line and exit
#
# Test ids must be unique within a file; a repeated id counts as a failure.

package require sqlite3

set ::testdir [file dirname [file normalize [info script]]]
if {[info exists ::env(STRATA_EXT)] && $::env(STRATA_EXT) ne ""} {
  set ::strata_ext [file normalize $::env(STRATA_EXT)]
} else {
  set ::strata_ext [file normalize [file join $::testdir .. .libs strata.so]]
}
if {![file exists $::strata_ext]} {
  puts "cannot find the extension: $::strata_ext (set STRATA_EXT)"
  puts "0 passed, 1 failed"
  exit 1
}

set ::test_name [file rootname [file tail $::argv0]]
if {[info exists ::env(STRATA_TEST_TMP)] && $::env(STRATA_TEST_TMP) ne ""} {
  set ::scratchdir [file normalize [file join $::env(STRATA_TEST_TMP) tcl-$::test_name]]
} else {
  set ::scratchdir [file normalize /tmp/strata-tcl-[pid]-$::test_name]
}
file delete -force $::scratchdir
file mkdir $::scratchdir

set ::n_pass 0
set ::n_fail 0
array set ::seen_ids {}
set ::soak [expr {[info exists ::env(STRATA_SOAK)] && $::env(STRATA_SOAK) ne "" && $::env(STRATA_SOAK) ne "0"}]
set ::valgrind [expr {[info exists ::env(STRATA_VALGRIND)] && $::env(STRATA_VALGRIND) ne ""}]

proc scratch {name} { return [file join $::scratchdir $name] }

# The seed for a randomized test: $env(STRATA_SEED), or a new one. Printed so
# that a failing run can be repeated.
proc test_seed {what} {
  if {[info exists ::env(STRATA_SEED)] && $::env(STRATA_SEED) ne ""} {
    set seed $::env(STRATA_SEED)
  } else {
    set seed [expr {([clock clicks] ^ [pid]) & 0x7fffffff}]
  }
  puts "$what: seed $seed (repeat with STRATA_SEED=$seed)"
  expr {srand($seed)}
  return $seed
}

set ::open_handles {}

proc sqlite_open {h file args} {
  if {[lsearch -exact $::open_handles $h] >= 0} { catch {$h close} }
  sqlite3 $h $file {*}$args
  $h enable_load_extension 1
  $h eval {SELECT load_extension($::strata_ext)}
  $h enable_load_extension 0
  if {[lsearch -exact $::open_handles $h] < 0} { lappend ::open_handles $h }
  return $h
}

# Close every handle opened with sqlite_open.
proc close_all {} {
  foreach h $::open_handles { catch {$h close} }
  set ::open_handles {}
}

proc reset_db {} {
  close_all
  foreach f [glob -nocomplain -directory $::scratchdir *] { file delete -force $f }
  sqlite_open db [scratch test.db]
}

proc execsql {sql {h db}} { return [uplevel [list $h eval $sql]] }

proc catchsql {sql {h db}} {
  set rc [catch {uplevel [list $h eval $sql]} res]
  return [list $rc $res]
}

proc errcode {{h db}} { return [$h errorcode] }

proc stat {tbl name {h db}} {
  return [$h onecolumn {SELECT value FROM strata_stats($tbl) WHERE name=$name}]
}

proc test_record {id ok detail} {
  if {[info exists ::seen_ids($id)]} {
    puts "FAIL $id: duplicate test id"
    incr ::n_fail
    return
  }
  set ::seen_ids($id) 1
  if {$ok} {
    incr ::n_pass
  } else {
    incr ::n_fail
    puts "FAIL $id"
    foreach line [split $detail \n] { puts "  $line" }
  }
}

# Results are compared as lists, so whitespace in the expected value does
# not matter.
proc do_test {id script expected} {
  set rc [catch {uplevel #0 $script} res]
  if {$rc != 0 && $rc != 2} {
    test_record $id 0 "error: $res"
    return
  }
  if {[catch {set ok [expr {[list {*}$res] eq [list {*}$expected]}]}]} {
    set ok [expr {$res eq $expected}]
  }
  test_record $id $ok "expected: [list {*}$expected]\n     got: $res"
}

proc do_execsql_test {id sql expected} {
  uplevel [list do_test $id [list execsql $sql] $expected]
}

proc do_catchsql_test {id sql expected} {
  uplevel [list do_test $id [list catchsql $sql] $expected]
}

proc finish_test {} {
  close_all
  if {$::n_fail == 0} { file delete -force $::scratchdir }
  puts "$::n_pass passed, $::n_fail failed"
  flush stdout
  exit [expr {$::n_fail ? 1 : 0}]
}
