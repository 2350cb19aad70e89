# demo.tcl -- strata in SQLite, side by side with an ordinary table.
#
#   tclsh tool/demo.tcl DIRECTORY ?ROWS?
#
# Creates DIRECTORY/demo.db, loads the strata extension ($STRATA_EXT, or
# .libs/strata.so of this checkout), fills a strata table and an ordinary
# table with the same ROWS rows (default 1000000; also $STRATA_DEMO_ROWS),
# runs the same queries on both with their timings, shows strata_stats, and
# tells how to open the result in the sqlite3 shell.

package require sqlite3

proc usage {} {
  puts stderr "usage: tclsh tool/demo.tcl DIRECTORY ?ROWS?"
  exit 2
}
if {[llength $argv] < 1 || [llength $argv] > 2} usage
set dir [file normalize [lindex $argv 0]]
set nRow 1000000
if {[info exists env(STRATA_DEMO_ROWS)]} { set nRow $env(STRATA_DEMO_ROWS) }
if {[llength $argv] == 2} { set nRow [lindex $argv 1] }
if {![string is integer -strict $nRow] || $nRow < 1000} {
  puts stderr "ROWS must be an integer >= 1000"
  exit 2
}

set here [file dirname [file normalize [info script]]]
if {[info exists env(STRATA_EXT)] && $env(STRATA_EXT) ne ""} {
  set ext [file normalize $env(STRATA_EXT)]
} else {
  set ext [file normalize [file join $here .. .libs strata.so]]
}
if {![file exists $ext]} {
  puts stderr "cannot find the extension at $ext: build it first (make), or set STRATA_EXT"
  exit 1
}

proc say {msg} { puts $msg; flush stdout }
proc ms {us} { format "%9.1f ms" [expr {$us / 1000.0}] }

# Run script, return microseconds.
proc timed {script} {
  set t0 [clock microseconds]
  uplevel 1 $script
  expr {[clock microseconds] - $t0}
}

file mkdir $dir
set dbfile [file join $dir demo.db]
foreach f [glob -nocomplain [file join $dir demo.db*]] { file delete -force $f }

say "== strata demo: $nRow rows, database $dbfile"
say "   extension: $ext"
sqlite3 db $dbfile
db enable_load_extension 1
db eval {SELECT load_extension($ext)}
db eval {PRAGMA journal_mode = WAL}

say ""
say "-- creating a strata table and an ordinary table with the same columns"
db eval {
  CREATE VIRTUAL TABLE kv USING strata(
    k INTEGER PRIMARY KEY, name TEXT, score REAL, payload BLOB
  );
  CREATE TABLE kv_sqlite(
    k INTEGER PRIMARY KEY, name TEXT, score REAL, payload BLOB
  );
}
say "   CREATE VIRTUAL TABLE kv USING strata(k INTEGER PRIMARY KEY, name TEXT, score REAL, payload BLOB)"
say "   CREATE TABLE kv_sqlite(k INTEGER PRIMARY KEY, name TEXT, score REAL, payload BLOB)"

# Keys in a scrambled order (a multiplicative permutation of 1..N), as writes
# arrive in real systems; the same rows go to both tables.
set fill {
  WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < $nRow)
  INSERT INTO %T SELECT (i * 2654435761) % 4294967296, 'user-' || i, (i % 1000) / 10.0,
                        randomblob(16)
  FROM r
}
say ""
say "-- loading $nRow rows into each (one transaction each, keys in random order)"
foreach tbl {kv kv_sqlite} {
  set us [timed { db eval "BEGIN; [string map [list %T $tbl] $fill]; COMMIT" }]
  set load($tbl) $us
  say [format "   %-10s %s  (%.0f rows/s)" $tbl [ms $us] [expr {$nRow / ($us / 1e6)}]]
}

# Keys that exist, for the lookups.
set keys {}
for {set i 0} {$i < 10000} {incr i} {
  set n [expr {1 + ($i * 7919) % $nRow}]
  lappend keys [expr {($n * 2654435761) % 4294967296}]
}
set lo 2000000000
set hi [expr {$lo + 4294967296 / 100}]

set queries [list \
  "10000 point lookups" {
    foreach key $keys { db eval {SELECT name FROM %T WHERE k = $key} }
  } \
  "range: 1% of the keys" {
    db eval "SELECT count(*), sum(score) FROM %T WHERE k BETWEEN $lo AND $hi"
  } \
  "ORDER BY k DESC LIMIT 10" {
    db eval {SELECT k, name FROM %T ORDER BY k DESC LIMIT 10}
  } \
  "k >= x ORDER BY k LIMIT 100" {
    db eval "SELECT k FROM %T WHERE k >= $lo ORDER BY k LIMIT 100"
  } \
  "aggregate over all rows" {
    db eval {SELECT count(*), avg(score), max(name) FROM %T}
  } \
  "1000 random-key inserts" {
    db eval BEGIN
    for {set i 0} {$i < 1000} {incr i} {
      set key [expr {4294967296 + $i * 104729}]
      db eval {INSERT INTO %T VALUES($key, 'new', 1.0, NULL)}
    }
    db eval COMMIT
  } \
]

say ""
say "-- the same queries on both tables"
say [format "   %-30s %12s %12s   %s" query strata sqlite "same result"]
foreach {label script} $queries {
  set res {}
  set t {}
  foreach tbl {kv kv_sqlite} {
    set s [string map [list %T $tbl] $script]
    set r {}
    lappend t [timed { set r [eval $s] }]
    lappend res $r
  }
  set same [expr {[lindex $res 0] eq [lindex $res 1] ? "yes" : "NO"}]
  say [format "   %-30s %s %s   %s" $label [ms [lindex $t 0]] [ms [lindex $t 1]] $same]
}

say ""
say "-- the plan: the key range and the order are answered by the engine"
foreach q {
  {SELECT * FROM kv WHERE k BETWEEN 5 AND 10}
  {SELECT * FROM kv ORDER BY k DESC LIMIT 10}
  {SELECT * FROM kv WHERE k IN (1, 2, 3)}
} {
  say "   $q"
  foreach {a b c detail} [db eval "EXPLAIN QUERY PLAN $q"] { say "      $detail" }
}

say ""
say "-- strata_flush('kv') writes the memtable to an sstable"
db eval {SELECT strata_flush('kv')}
say "-- SELECT name, value FROM strata_stats('kv') (counters that are not zero)"
db eval {SELECT name, value FROM strata_stats('kv')} {
  if {$value ne "0" && $value ne "0.0"} {
    if {[string is double -strict $value] && ![string is integer -strict $value]} {
      set value [format %.2f $value]
    }
    say [format "   %-26s %s" $name $value]
  }
}

set sizeStrata 0
foreach f [glob -nocomplain [file join $dir demo.db-kv.strata *]] { incr sizeStrata [file size $f] }
db close
say ""
say [format "-- on disk: strata directory %.1f MB (zstd-compressed sstables + log), demo.db %.1f MB (holds kv_sqlite)" \
       [expr {$sizeStrata / 1048576.0}] [expr {[file size $dbfile] / 1048576.0}]]

say ""
say "-- try it yourself:"
say "   sqlite3 $dbfile"
say "   sqlite> .load [file rootname $ext]"
say "   sqlite> SELECT * FROM kv ORDER BY k DESC LIMIT 5;"
say "   sqlite> SELECT * FROM strata_stats('kv');"
say "   (from Python: conn.enable_load_extension(True); conn.load_extension('[file rootname $ext]'))"
