# all.tcl -- run every test/*.test file, each in its own tclsh, and print the
# total as the last line: `N passed, N failed`.
#
#   STRATA_EXT=.libs/strata.so tclsh test/all.tcl ?PATTERN ...?
#
# PATTERNs (glob) select files by name, e.g. `tclsh test/all.tcl 'txn*'`.
# With STRATA_VALGRIND set, each file runs under valgrind memcheck (and the
# differential test does a short run); a memcheck error fails the file.
# A file that crashes or prints no result line counts as one failure.

set testdir [file dirname [file normalize [info script]]]
set tclsh [info nameofexecutable]
set patterns $argv
if {[llength $patterns] == 0} { set patterns {*} }

set files {}
foreach f [lsort [glob -directory $testdir *.test]] {
  foreach p $patterns {
    if {[string match $p [file tail $f]] || [string match $p [file rootname [file tail $f]]]} {
      lappend files $f
      break
    }
  }
}

set wrapper {}
if {[info exists env(STRATA_VALGRIND)] && $env(STRATA_VALGRIND) ne ""} {
  set wrapper [list valgrind -q --error-exitcode=99 --leak-check=full \
                   --errors-for-leak-kinds=definite --trace-children=no]
}

set total_pass 0
set total_fail 0
set failed_files {}
set t0 [clock milliseconds]
foreach f $files {
  set name [file tail $f]
  set t1 [clock milliseconds]
  set rc [catch {exec {*}$wrapper $tclsh $f 2>@1} out opts]
  set ms [expr {[clock milliseconds] - $t1}]
  set status 0
  if {$rc} {
    set ec [dict get $opts -errorcode]
    if {[lindex $ec 0] eq "CHILDSTATUS"} {
      set status [lindex $ec 2]
    } elseif {[lindex $ec 0] eq "CHILDKILLED"} {
      set status "killed by [lindex $ec 2]"
    } else {
      set status "error: $out"
    }
  }
  set lines [split $out \n]
  set result {}
  foreach line $lines {
    if {[regexp {^(\d+) passed, (\d+) failed} $line -> p fl]} { set result [list $p $fl] }
  }
  if {$result eq {}} {
    puts [format "%-20s CRASHED (%s) after %d ms; last output:" $name $status $ms]
    foreach line [lrange $lines end-20 end] { puts "    $line" }
    incr total_fail
    lappend failed_files $name
    continue
  }
  lassign $result p fl
  if {$status ne "0" && $fl == 0} {
    # e.g. valgrind found an error after all tests passed
    puts [format "%-20s exit status %s with no failed test; last output:" $name $status]
    foreach line [lrange $lines end-30 end] { puts "    $line" }
    set fl 1
  }
  incr total_pass $p
  incr total_fail $fl
  puts [format "%-20s %5d passed, %d failed  (%.1f s)" $name $p $fl [expr {$ms / 1000.0}]]
  if {$fl} {
    lappend failed_files $name
    set n 0
    foreach line $lines {
      if {[string match "FAIL*" $line] || [string match "  *" $line]} {
        puts "    $line"
        if {[incr n] > 60} break
      }
    }
  }
}
if {[llength $failed_files]} { puts "failing files: $failed_files" }
puts [format "(%.1f s)" [expr {([clock milliseconds] - $t0) / 1000.0}]]
puts "$total_pass passed, $total_fail failed"
exit [expr {$total_fail ? 1 : 0}]
