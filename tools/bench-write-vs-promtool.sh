#!/usr/bin/env bash
# tools/bench-write-vs-promtool.sh [--metrics=N] [--scrapes=N] [--threads=N] [FILE]
#
# Runs, in one go and on the same label file and parameters:
#   1. Debian's `promtool tsdb bench write` (under /usr/bin/time -v for peak RSS),
#   2. `cairn-tool bench write` (same),
#   3. Debian's `prometheus` started on promtool's output directory, timing its WAL replay
#      from its own log line ("WAL replay completed ... total_replay_duration=..."),
# and prints both sets of figures with Cairn/Prometheus ratios. FILE defaults to a label file
# made by `cairn-tool bench labels --series=20000` (the shape of Prometheus's 20kseries.json).
# Work happens in $CAIRN_BENCH_DIR (default /tmp/cairn-bench-write).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
metrics=10000 scrapes=3000 threads=$(nproc) file=""
for arg in "$@"; do
  case "$arg" in
    --metrics=*) metrics=${arg#*=} ;;
    --scrapes=*) scrapes=${arg#*=} ;;
    --threads=*) threads=${arg#*=} ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) file=$arg ;;
  esac
done
work=${CAIRN_BENCH_DIR:-/tmp/cairn-bench-write}

"$src/tools/setup.sh" >/dev/null
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null || [ ! -x /usr/bin/time ]; then
  # Debian's prometheus package starts a service when installed; a policy-rc.d stops that.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus time >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

rm -rf "$work" && mkdir -p "$work"
if [ -z "$file" ]; then
  file=$work/20kseries.json
  "$src/cairn-tool" bench labels --series=20000 --out="$file" >/dev/null
fi

echo "== promtool tsdb bench write --metrics=$metrics --scrapes=$scrapes ($(promtool --version 2>&1 | head -n1))"
/usr/bin/time -v promtool tsdb bench write --out="$work/promtool" --metrics="$metrics" \
  --scrapes="$scrapes" "$file" >"$work/promtool.out" 2>"$work/promtool.time"
cat "$work/promtool.out"
p_rate=$(sed -n 's/.*samples\/sec: *//p' "$work/promtool.out")
p_rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/promtool.time")
p_wal=$(du -sb "$work/promtool/storage/wal" | cut -f1)
p_samples=$(sed -n 's/.*total samples: *//p' "$work/promtool.out")

echo
echo "== cairn-tool bench write --metrics=$metrics --scrapes=$scrapes --threads=$threads"
/usr/bin/time -v "$src/cairn-tool" bench write --out="$work/cairn" --metrics="$metrics" \
  --scrapes="$scrapes" --threads="$threads" "$file" >"$work/cairn.out" 2>"$work/cairn.time"
cat "$work/cairn.out"
c_rate=$(sed -n 's/^ingestion: .*: \([0-9.]*\) samples\/s.*/\1/p' "$work/cairn.out")
# The writing process's own peak (VmHWM), as promtool's is its own: cairn-tool's restart
# measurement runs in a child process, which /usr/bin/time's figure would include.
c_rss=$(sed -n 's/^memory: peak RSS \([0-9.]*\) MiB.*/\1/p' "$work/cairn.out" |
  awk '{ printf "%d", $1 * 1024 }')
c_wal_bps=$(sed -n 's/^wal: .*, \([0-9.]*\) bytes per sample/\1/p' "$work/cairn.out")
c_chunk_bps=$(sed -n 's/^chunks: .*, \([0-9.]*\) bytes per sample.*/\1/p' "$work/cairn.out")
c_replay=$(sed -n 's/.*WAL replay \([0-9.]*\) s:.*/\1/p' "$work/cairn.out")
c_replayed=$(sed -n 's/.*WAL replay [0-9.]* s: \([0-9]*\) samples.*/\1/p' "$work/cairn.out")

echo
echo "== prometheus replaying promtool's WAL ($(prometheus --version 2>&1 | head -n1))"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'global:\n  scrape_interval: 1h\n' > "$work/prometheus.yml"
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/promtool/storage" \
  --web.listen-address="127.0.0.1:$port" --storage.tsdb.retention.time=100y \
  >"$work/prometheus.log" 2>&1 &
ppid=$!
for _ in $(seq 1 600); do
  grep -q 'WAL replay completed' "$work/prometheus.log" && break
  kill -0 "$ppid" 2>/dev/null || break
  sleep 0.1
done
kill "$ppid" 2>/dev/null || true
wait "$ppid" 2>/dev/null || true
replay_line=$(grep 'WAL replay completed' "$work/prometheus.log" || true)
echo "${replay_line:-no replay line in $work/prometheus.log}"
to_seconds() { # Go duration (1.2s, 850ms, 1m2.5s) to seconds
  python3 - "$1" <<'PY'
import re, sys
total = 0.0
for num, unit in re.findall(r'([0-9.]+)(ms|µs|us|ns|s|m|h)', sys.argv[1]):
    total += float(num) * {'h': 3600, 'm': 60, 's': 1, 'ms': 1e-3, 'us': 1e-6, 'µs': 1e-6, 'ns': 1e-9}[unit]
print(total)
PY
}
p_replay=$(to_seconds "$(echo "$replay_line" | sed -n 's/.*total_replay_duration=\([^ ]*\).*/\1/p')")

echo
echo "== summary ($(nproc) cores, $(date -u +%Y-%m-%d), metrics=$metrics scrapes=$scrapes)"
python3 - "$p_rate" "$c_rate" "$p_rss" "$c_rss" "$metrics" "$p_wal" "$p_samples" \
  "$c_wal_bps" "$c_chunk_bps" "$p_replay" "$c_replay" "$c_replayed" <<'PY'
import sys
(p_rate, c_rate, p_rss, c_rss, metrics, p_wal, p_samples, c_wal_bps, c_chunk_bps,
 p_replay, c_replay, c_replayed) = sys.argv[1:]
f = lambda x: float(x) if x else float('nan')
p_rate, c_rate, p_rss, c_rss, metrics = f(p_rate), f(c_rate), f(p_rss), f(c_rss), f(metrics)
p_wal_bps = f(p_wal) / f(p_samples)
rows = [
    ("append samples/s", p_rate, c_rate, c_rate / p_rate, "higher is better"),
    ("peak RSS per series (B)", p_rss * 1024 / metrics, c_rss * 1024 / metrics,
     (c_rss) / (p_rss), "lower is better"),
    ("WAL bytes per sample", p_wal_bps, f(c_wal_bps), f(c_wal_bps) / p_wal_bps,
     "lower is better"),
    ("WAL replay seconds", f(p_replay), f(c_replay), f(c_replay) / f(p_replay),
     "lower is better"),
]
print(f"{'':28}{'prometheus':>14}{'cairn':>14}{'cairn/prom':>12}")
for name, p, c, r, note in rows:
    print(f"{name:28}{p:14.3f}{c:14.3f}{r:12.3f}  ({note})")
print(f"cairn chunk bytes per sample: {f(c_chunk_bps):.3f}; cairn replayed {c_replayed} samples")
PY
