#!/usr/bin/env bash
# Labelled detection benchmark: writes SEEDS weeks of traffic (LINES lines
# each, CLIENTS clients, every attack known: loggen.WriteWeek) in each of
# FORMATS, judges them through the real parser and rules, and prints per
# attack kind how many were found, misclassified or split, how many got in
# and were reported as critical compromises, and every false alert with its
# kind. It exits non-zero on any miss, misclassification, split or false
# alert, naming the seed so it can become a regression case.
#
#   testdata/bench/detect.sh                       # 20 seeds x 1M lines, nginx
#   SEEDS=5 LINES=200000 FORMATS=nginx,json,gunicorn,combined testdata/bench/detect.sh
#   FLEET=3 testdata/bench/detect.sh               # split over 3 nodes, judged from rows
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin"
export SPRAYWATCH_BENCH_SEEDS="${SEEDS:-20}"
export SPRAYWATCH_BENCH_FIRST_SEED="${FIRST_SEED:-1}"
export SPRAYWATCH_BENCH_LINES="${LINES:-1000000}"
export SPRAYWATCH_BENCH_CLIENTS="${CLIENTS:-3000}"
export SPRAYWATCH_BENCH_FORMATS="${FORMATS:-nginx}"
export SPRAYWATCH_BENCH_FLEET="${FLEET:-0}"
echo "$SPRAYWATCH_BENCH_SEEDS seeds from $SPRAYWATCH_BENCH_FIRST_SEED, $SPRAYWATCH_BENCH_LINES lines, $SPRAYWATCH_BENCH_CLIENTS clients, formats $SPRAYWATCH_BENCH_FORMATS"
go test ./rules -run '^TestDetectionBenchmark$' -count=1 -timeout 0 -v 2>&1 |
	sed -n -e 's/^ *accuracy_test.go:[0-9]*: //p' -e '/^ *|/p' -e '/^ *false alerts/p' -e '/^--- /p' -e '/^\(ok\|FAIL\)/p'
exit "${PIPESTATUS[0]}"
