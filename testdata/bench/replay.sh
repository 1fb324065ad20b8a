#!/usr/bin/env bash
# Replay benchmark: generates an nginx access log of LINES benign lines
# (default one million) from CLIENTS clients over HOURS hours, with attacks
# hidden in it, then times a whole `spraywatch replay` into a fresh SQLite
# database (parsing, windows, rules, persistence and the index build).
#
# The machine may be busy, so absolute speeds mean little: every run is
# alternated, in the same loop, with a reference: mawk counting, per address,
# the distinct identities and keys among 401s (a tenth of the work), and with
# BASE, another spraywatch binary, when given. The script prints each run and
# the medians of lines/s, peak RSS and the ratio of spraywatch's time to
# mawk's (below 1.0: spraywatch is faster than the one-line awk count).
#
#   testdata/bench/replay.sh                       # 1M lines, 200 clients, 6 h
#   CLIENTS=5000 HOURS=168 testdata/bench/replay.sh   # a week, 5,000 clients
#   MODE=flood testdata/bench/replay.sh            # 60% one-off addresses, identities and keys
#   BASE=/tmp/spraywatch-old RUNS=5 testdata/bench/replay.sh   # before/after
#
# MODE=flood writes LINES*2/5 demo lines (200 clients, a spray, a brute
# force, a stuffing run hidden in them) and, interleaved at the same
# timestamps, LINES*3/5 lines each from a random address in 10.0.0.0/8 with
# an identity and a key of its own, all 401s: about 590,000 distinct
# addresses in a million lines.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin"
LINES="${LINES:-1000000}"
CLIENTS="${CLIENTS:-200}"
HOURS="${HOURS:-6}"
MODE="${MODE:-demo}"
RUNS="${RUNS:-3}"
out="${OUT:-testdata/bench/out}"
mkdir -p "$out"
bin="${BIN:-$out/spraywatch}"   # BIN=path measures an existing binary
[ -n "${BIN:-}" ] || go build -o "$bin" ./cmd/spraywatch
case "$MODE" in
demo)
	"$bin" demo --write "$out/case" --lines "$LINES" --clients "$CLIENTS" --hours "$HOURS" >/dev/null
	;;
flood)
	"$bin" demo --write "$out/case" --lines $((LINES * 2 / 5)) --clients "$CLIENTS" --hours "$HOURS" >/dev/null
	mv "$out/case/access.log" "$out/case/benign.log"
	mawk -v n=$((LINES * 3 / 5)) -v m=$((LINES * 2 / 5)) 'BEGIN { srand(7) }
	{ print; owed += n / m
	  while (owed >= 1) { owed--; f++
	    ip = "10." int(rand() * 256) "." int(rand() * 256) "." int(rand() * 256)
	    print ip, "- -", $4, $5, "\"GET /api/v1/clients/client-f" f "/resource HTTP/1.1\" 401 32 \"-\" \"client/1.0\" key=sk_live_f" f " rt=0.004" } }' \
		"$out/case/benign.log" >"$out/case/access.log"
	rm "$out/case/benign.log"
	;;
*)
	echo "MODE must be demo or flood" >&2
	exit 2
	;;
esac
log="$out/case/access.log"
echo "log: $(wc -l <"$log") lines, $(du -h "$log" | cut -f1), mode $MODE, $CLIENTS clients over ${HOURS}h, $(mawk '{print $1}' "$log" | sort -u | wc -l) addresses; $(nproc) cores"

awkref='$9 == 401 { split($7, p, "/"); id = p[5]; ip = $1; kk = $(NF-1);
  if (!((ip SUBSEP id) in seen)) { seen[ip SUBSEP id] = 1; nid[ip]++ }
  if (!((ip SUBSEP kk) in seenk)) { seenk[ip SUBSEP kk] = 1; nk[ip]++ } }
END { for (ip in nid) if (nid[ip] >= 10 && nk[ip] <= 3) print ip, nid[ip], nk[ip] }'

now() { date +%s.%N; }
# replay BINARY NAME: one timed replay; appends "seconds lines/s rssMB cpu-seconds" to
# $out/NAME.runs. CPU seconds (user + system) depend far less on what else
# runs on the machine than wall time does.
replay() {
	rm -f "$out/case/bench.db"*
	local t0 t1
	t0=$(now)
	/usr/bin/time -f '%U %S' -o "$out/$2.cpu" "$1" replay --config "$out/case/spraywatch.yml" --db "$out/case/bench.db" --force --no-progress >"$out/$2.incidents" 2>"$out/$2.summary"
	t1=$(now)
	local s rate rss cpu
	s=$(echo "$t1 - $t0" | bc -l)
	cpu=$(mawk '{ print $1 + $2 }' "$out/$2.cpu")
	rate=$(tail -n 1 "$out/$2.summary" | sed -n 's/.*(\([0-9]*\) lines\/s.*/\1/p')
	rss=$(tail -n 1 "$out/$2.summary" | sed -n 's/.*peak RSS \([0-9]*\) MB.*/\1/p')
	echo "$s $rate $rss $cpu" >>"$out/$2.runs"
	printf '  %-10s %6.2f s  %8s lines/s  peak RSS %4s MB  CPU %6.2f s  (%s)\n' "$2" "$s" "$rate" "$rss" "$cpu" "$(tail -n 1 "$out/$2.summary" | cut -d';' -f1)"
}
rm -f "$out"/*.runs
for i in $(seq "$RUNS"); do
	echo "run $i"
	t0=$(now)
	mawk "$awkref" "$log" >"$out/awk.out"
	t1=$(now)
	a=$(echo "$t1 - $t0" | bc -l)
	echo "$a" >>"$out/awk.runs"
	printf '  %-10s %6.2f s  (%d addresses flagged)\n' mawk "$a" "$(wc -l <"$out/awk.out")"
	replay "$bin" new
	[ -z "${BASE:-}" ] || replay "$BASE" base
	echo "$(tail -n1 "$out/new.runs" | cut -d' ' -f1) / $a" | bc -l >>"$out/ratio.runs"
	[ -z "${BASE:-}" ] || echo "$(tail -n1 "$out/base.runs" | cut -d' ' -f1) / $a" | bc -l >>"$out/bratio.runs"
done
median() { sort -g | mawk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { cut -d' ' -f"$2" "$out/$1.runs" | median; }
echo "medians over $RUNS runs:"
printf '  spraywatch: %.0f lines/s, peak RSS %s MB, %.2f s, CPU %.2f s, time ratio to mawk %.2f\n' "$(col new 2)" "$(col new 3)" "$(col new 1)" "$(col new 4)" "$(median <"$out/ratio.runs")"
if [ -n "${BASE:-}" ]; then
	printf '  base:       %.0f lines/s, peak RSS %s MB, %.2f s, CPU %.2f s, time ratio to mawk %.2f\n' "$(col base 2)" "$(col base 3)" "$(col base 1)" "$(col base 4)" "$(median <"$out/bratio.runs")"
	paste -d' ' "$out/new.runs" "$out/base.runs" | mawk '{ print $4 / $8 }' >"$out/cpuratio.runs"
	printf '  CPU time ratio spraywatch/base (median of the alternated pairs): %.3f\n' "$(median <"$out/cpuratio.runs")"
	cmp -s <(cut -c1-400 "$out/new.incidents") <(cut -c1-400 "$out/base.incidents") && echo "  same incidents as base" || echo "  incidents DIFFER from base: diff $out/new.incidents $out/base.incidents"
fi
echo "database: $(du -h "$out/case/bench.db" | cut -f1)"
