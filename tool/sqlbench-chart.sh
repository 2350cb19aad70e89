#!/bin/sh
# sqlbench-chart.sh -- draw strata-sql-bench's CSV (--csv=FILE) as a PNG.
#
#   sh tool/sqlbench-chart.sh FILE.csv OUT.png [ROWS] [TITLE]
#
# One cluster of bars per workload, one bar per engine, ops/s on a log scale
# (the workloads span four orders of magnitude). ROWS picks the lines of one
# run size when the CSV holds several (default: the first size in the file);
# the other columns of the CSV (keys, values, txn, sync) are taken from the
# first matching line and printed in the title. Needs gnuplot (Debian:
# gnuplot-nox) and awk.
set -e

if [ $# -lt 2 ]; then
  echo "usage: sh tool/sqlbench-chart.sh FILE.csv OUT.png [ROWS] [TITLE]" >&2
  exit 2
fi
csv=$1
out=$2
rows=${3:-}
title=${4:-}
command -v gnuplot >/dev/null 2>&1 || { echo "sqlbench-chart: gnuplot not found (apt-get install gnuplot-nox)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Reshape to: workload strata rowid without (ops/s, "-" when absent), in the
# order the workloads first appear. Columns of the CSV: rows,keys,values,txn,
# sync,repeats,engine,workload,ops_per_s,...
awk -F, -v rows="$rows" -v meta="$tmp/meta" '
  NR == 1 { next }
  rows == "" { rows = $1 }
  $1 != rows { next }
  !seen[$8]++ { order[++n] = $8 }
  { ops[$8, $7] = $9
    if (!m) { m = 1; printf "%s rows, %s keys, %s values, %s rows/txn, sync %s, median of %s\n", \
                $1, $2, $3 == "random" ? "incompressible" : "50%-compressible", $4, $5, $6 > meta } }
  END {
    for (i = 1; i <= n; i++) {
      w = order[i]
      printf "%s", w
      split("strata rowid without", e, " ")
      for (j = 1; j <= 3; j++) printf " %s", ((w, e[j]) in ops) ? ops[w, e[j]] : "-"
      printf "\n"
    }
  }' "$csv" > "$tmp/data"

if [ ! -s "$tmp/data" ]; then
  echo "sqlbench-chart: no lines for ${rows:-any size} in $csv" >&2
  exit 1
fi
[ -n "$title" ] || title="strata-sql-bench: $(cat "$tmp/meta")"

gnuplot <<EOF
set terminal pngcairo size 1200,560 font "sans,10" noenhanced
set output "$out"
set title "$title"
set datafile missing "-"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set format y "%.0s%c"
set ylabel "ops/s (rows/s for readseq, readreverse, count; log scale)"
set grid ytics
set key top left
set xtics rotate by -30 nomirror
set yrange [1000:*]
plot "$tmp/data" using 2:xtic(1) title "strata (virtual table)" lc rgb "#1f77b4", \
     "" using 3 title "rowid table" lc rgb "#ff7f0e", \
     "" using 4 title "WITHOUT ROWID table" lc rgb "#2ca02c"
EOF
echo "sqlbench-chart: wrote $out"
