#!/usr/bin/env bash
# Daemon flood benchmark: starts the real `spraywatch run` on an empty log,
# appends a flood to it at RATE lines/s (default 200,000) and reports how the
# daemon kept up: lines/s, how far behind the writer it got (how long ago the
# oldest line it had not read yet was written; the exported
# spraywatch_source_seconds_behind is printed too), its peak RSS (VmHWM),
# whether every line was read and counted, and the incidents it raised (the
# hidden spray must be among them).
#
# The log is the replay benchmark's flood: BENIGN demo lines (200 clients
# over 6 h with a spray, a brute force and a stuffing run hidden in them)
# and FLOOD interleaved lines, each from a random address in 10.0.0.0/8 with
# an identity and a key of its own, all 401s (by default 1.63M lines with
# 1.18M distinct addresses).
#
#   testdata/bench/daemon.sh
#   RATE=100000 FLOOD=600000 testdata/bench/daemon.sh
#   BIN=/tmp/spraywatch-old testdata/bench/daemon.sh   # measure another binary
#   BASE=/tmp/spraywatch-old RUNS=3 testdata/bench/daemon.sh   # alternated with a reference
#   PROFILE=/tmp/daemon.prof testdata/bench/daemon.sh  # CPU profile of the daemon
#
# With BASE, each of RUNS rounds runs the new binary then BASE on the same
# log, and the script prints the medians and the median CPU ratio of the
# pairs (CPU time depends far less on a busy machine than lines/s).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin"
RATE="${RATE:-200000}"
BENIGN="${BENIGN:-400000}"
FLOOD="${FLOOD:-1200000}"
PORT="${PORT:-19181}"
out="${OUT:-testdata/bench/out/daemon}"
mkdir -p "$out"
out="$(cd "$out" && pwd)" # the config's paths are taken relative to the config
rm -rf "$out/gen" "$out"/access.log "$out"/flood.log "$out"/spraywatch.db* "$out"/alerts.jsonl
bin="${BIN:-$out/spraywatch}"
[ -n "${BIN:-}" ] || go build -o "$bin" ./cmd/spraywatch
"$bin" demo --write "$out/gen" --lines "$BENIGN" >/dev/null
mawk -v n="$FLOOD" -v m="$BENIGN" 'BEGIN { srand(7) }
{ print; owed += n / m
  while (owed >= 1) { owed--; f++
    ip = "10." int(rand() * 256) "." int(rand() * 256) "." int(rand() * 256)
    print ip, "- -", $4, $5, "\"GET /api/v1/clients/client-f" f "/resource HTTP/1.1\" 401 32 \"-\" \"client/1.0\" key=sk_live_f" f " rt=0.004" } }' \
	"$out/gen/access.log" >"$out/flood.log"
total=$(wc -l <"$out/flood.log")
echo "flood: $total lines, $(mawk '{print $1}' "$out/flood.log" | sort -u | wc -l) addresses, written at $RATE lines/s; $(nproc) cores"
# measure BINARY NAME: one daemon run on the flood, appended to $out/NAME.runs.
measure() {
rm -rf "$out"/spraywatch.db* "$out"/alerts.jsonl
: >"$out/access.log"
# The demo's config, turned into a daemon's: the log it appends to, its own
# database, metrics on loopback, incidents as JSON lines.
sed -e "s#^database: .*#database: $out/spraywatch.db#" -e "s#^fingerprint_secret_file: .*#fingerprint_secret_file: $out/fingerprint.key#" \
	-e "s#paths: \[access.log\]#paths: [$out/access.log]#" "$out/gen/spraywatch.yml" >"$out/spraywatch.yml"
cp "$out/gen/fingerprint.key" "$out/" 2>/dev/null || true
cat >>"$out/spraywatch.yml" <<EOF
metrics_listen: 127.0.0.1:$PORT
start_at: beginning
alerts:
  - type: file
    path: $out/alerts.jsonl
EOF
"$1" run ${PROFILE:+--cpuprofile "$PROFILE"} --config "$out/spraywatch.yml" 2>"$out/daemon.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
	curl -sf "http://127.0.0.1:$PORT/metrics" >/dev/null 2>&1 && break
	sleep 0.1
done
python3 - "$out/flood.log" "$out/access.log" "$RATE" "$PORT" "$pid" "$total" "$out/$2.run" <<'EOF'
import sys, time, urllib.request
src, dst, rate, port, pid, total = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], int(sys.argv[6])
def metrics():
    out = {"read": 0, "behind": 0.0}
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except Exception:
        return out
    for line in body.splitlines():
        if line.startswith("spraywatch_lines_read_total"):
            out["read"] += float(line.split()[-1])
        elif line.startswith("spraywatch_source_seconds_behind"):
            out["behind"] = max(out["behind"], float(line.split()[-1]))
    return out
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024
    return 0
import bisect
lines = open(src, "rb").read().splitlines(keepends=True)
chunk = max(1, rate // 20)
start = time.time()
# (cumulative lines written, when): how far behind the daemon is, in
# seconds, is how long ago the first line it has not read was written.
marks_n, marks_t = [], []
worst, lag, peak, nextpoll = 0.0, 0.0, 0, start
def poll():
    global worst, lag, peak
    m = metrics(); worst = max(worst, m["behind"]); peak = max(peak, rss())
    i = bisect.bisect_right(marks_n, m["read"])
    if i < len(marks_n):
        lag = max(lag, time.time() - marks_t[i])
    return m
with open(dst, "ab", buffering=0) as f:
    for i in range(0, len(lines), chunk):
        f.write(b"".join(lines[i:i + chunk]))
        marks_n.append(min(i + chunk, len(lines))); marks_t.append(time.time())
        due = start + (i + chunk) / rate
        while True:
            now = time.time()
            if now >= nextpoll:
                poll(); nextpoll = now + 0.5
            if now >= due:
                break
            time.sleep(min(due - now, 0.05))
written = time.time() - start
while True:
    m = poll()
    if m["read"] >= total or time.time() - start > written + 600:
        break
    time.sleep(0.2)
done = time.time() - start
print(f"written in {written:.1f} s ({total / written:.0f} lines/s); read in {done:.1f} s ({m['read'] / done:.0f} lines/s), "
      f"{done - written:.1f} s after the writer finished")
print(f"lines read {m['read']:.0f} of {total}; behind the writer by up to {lag:.1f} s "
      f"(spraywatch_source_seconds_behind up to {worst:.1f}); RSS sampled up to {peak} MB")
print(f"{m['read'] / done:.0f} {lag:.1f}", file=open(sys.argv[7], "w"))
EOF
sleep 2 # a flush interval and a tick
hwm=$(mawk '/^VmHWM/ { print int($2 / 1024) }' "/proc/$pid/status")
echo "peak RSS (VmHWM) $hwm MB"
# CPU seconds (user + system) depend far less on the machine's load than lines/s.
cpu=$(mawk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$pid/stat")
printf 'CPU %s s, %.2f us a line\n' "$cpu" "$(echo "$cpu * 1000000 / $total" | bc -l)"
kill -TERM $pid
wait $pid || true
trap - EXIT
"$1" alerts --db "$out/spraywatch.db" -o json 2>/dev/null | python3 -c '
import json, sys, collections
incs = [json.loads(l) for l in sys.stdin if l.strip()]
kinds = collections.Counter(i["kind"] for i in incs)
spray = [i for i in incs if i["kind"] == "spray" and "203.0.113.66" in i.get("ips", [])]
print("incidents:", dict(kinds), "; hidden spray found" if spray else "; hidden spray NOT found")'
python3 - "$out/spraywatch.db" "$total" <<'EOF'
import sqlite3, sys
n = sqlite3.connect(sys.argv[1]).execute("SELECT COALESCE(SUM(count), 0) FROM attempts").fetchone()[0]
print(f"attempt rows count {n} lines of {sys.argv[2]}" + ("" if n == int(sys.argv[2]) else " (LINES LOST)"))
EOF
# lines/s, seconds behind, peak RSS MB, CPU s: one line a run, for the medians
echo "$(cat "$out/$2.run") $hwm $cpu" >>"$out/$2.runs"
}
rm -f "$out"/*.runs
runs="${RUNS:-1}"
for i in $(seq "$runs"); do
	[ "$runs" = 1 ] && [ -z "${BASE:-}" ] || echo "== run $i: $bin"
	measure "$bin" new
	if [ -n "${BASE:-}" ]; then
		echo "== run $i: base $BASE"
		measure "$BASE" base
	fi
done
if [ "$runs" != 1 ] || [ -n "${BASE:-}" ]; then
	median() { sort -g | mawk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
	col() { cut -d' ' -f"$2" "$out/$1.runs" | median; }
	echo "medians over $runs runs:"
	for n in new base; do
		[ -f "$out/$n.runs" ] || continue
		printf '  %-5s %.0f lines/s, behind up to %.1f s, peak RSS %s MB, CPU %.2f s (%.2f us a line)\n' "$n" "$(col $n 1)" "$(col $n 2)" "$(col $n 3)" "$(col $n 4)" \
			"$(echo "$(col $n 4) * 1000000 / $total" | bc -l)"
	done
	if [ -n "${BASE:-}" ]; then
		paste -d' ' "$out/new.runs" "$out/base.runs" | mawk '{ print $4 / $8 }' >"$out/cpuratio.runs"
		printf '  CPU time ratio new/base (median of the alternated pairs): %.3f\n' "$(median <"$out/cpuratio.runs")"
	fi
fi
