# SPDX-License-Identifier: MIT
# chart.gp - the results' bar chart: ns per operation for each time workload,
# one bar per allocator, on a log scale (the peers span two orders of magnitude).
#   gnuplot -e "datafile='chart.dat'; outfile='chart.png'; ncols=N" chart.gp
# datafile comes from bench_report -c; ncols is its number of columns.
if (!exists("term")) term = "pngcairo"
if (term eq "svg") {
	set terminal svg size 1200,600 font "sans,11" background rgb "white"
} else {
	set terminal @term size 1200,600 font "sans,10"
}
set output outfile
set title "heapd and its peers: ns per operation (lower is better)"
set datafile missing "-"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set ylabel "ns per operation (log scale)"
set grid ytics
set key below horizontal reverse Left width 2
set xtics rotate by -30 nomirror
plot for [i=2:ncols] datafile using i:xtic(1) title columnheader(i)
