#!/usr/bin/env bash
# Replay benchmark: generates an nginx access log of LINES lines (default one
# million) with attacks hidden in benign traffic from CLIENTS clients, then
# times a whole `spraywatch replay` into a fresh SQLite database and prints
# lines/s and peak RSS (the replay reports its own VmHWM).
#
#   testdata/bench/replay.sh                 # 1M lines, 200 clients
#   LINES=3000000 CLIENTS=2000 testdata/bench/replay.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin"
LINES="${LINES:-1000000}"
CLIENTS="${CLIENTS:-200}"
HOURS="${HOURS:-6}"
out="testdata/bench/out"
mkdir -p "$out"
bin="${BIN:-$out/spraywatch}"   # BIN=path measures an existing binary
[ -n "${BIN:-}" ] || go build -o "$bin" ./cmd/spraywatch
"$bin" demo --write "$out/case" --lines "$LINES" --clients "$CLIENTS" --hours "$HOURS" >/dev/null
rm -f "$out/case/bench.db"*
echo "log: $(wc -l < "$out/case/access.log") lines, $(du -h "$out/case/access.log" | cut -f1), $CLIENTS clients over ${HOURS}h; $(nproc) cores"
"$bin" replay --config "$out/case/spraywatch.yml" --db "$out/case/bench.db" --force --no-progress >/dev/null 2>"$out/summary.txt"
tail -n 1 "$out/summary.txt"
echo "database: $(du -h "$out/case/bench.db" | cut -f1)"
