#!/usr/bin/env bash
# tools/bench-query-vs-prometheus.sh [--series=N] [--rounds=N] [--concurrency=N]
#
# Query latency, Cairn against Debian's prometheus on the same samples, in one run:
#   1. `cairn-tool bench query-data` writes a data set of N series (default 100000) over the
#      last hour into a Cairn data directory and, sample for sample, an OpenMetrics file;
#   2. `promtool tsdb create-blocks-from openmetrics` turns the file into Prometheus blocks;
#   3. both servers start on their directories (each on its own port);
#   4. `cairn-tool bench query` runs the dashboard query list against each over HTTP, first
#      Prometheus, then Cairn, then both again, and the script prints the medians and
#      Cairn/Prometheus ratios of the second pass (the first warms the page cache).
# Work happens in $CAIRN_BENCH_DIR (default /tmp/cairn-bench-query).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
series=100000 rounds=20 concurrency=4
for arg in "$@"; do
  case "$arg" in
    --series=*) series=${arg#*=} ;;
    --rounds=*) rounds=${arg#*=} ;;
    --concurrency=*) concurrency=${arg#*=} ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown argument $arg" >&2; exit 2 ;;
  esac
done
work=${CAIRN_BENCH_DIR:-/tmp/cairn-bench-query}

"$src/tools/setup.sh" >/dev/null
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  # Debian's prometheus package starts a service when installed; a policy-rc.d stops that.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

rm -rf "$work" && mkdir -p "$work"
end=$(( $(date +%s) / 60 * 60 ))
echo "== data: $series series, 1h at 30s ending $end"
"$src/cairn-tool" bench query-data --series="$series" --duration=1h --interval=30s --end="$end" \
  --out="$work/cairn" --openmetrics="$work/data.om" 2>"$work/query-data.log"
promtool tsdb create-blocks-from openmetrics "$work/data.om" "$work/prometheus" >/dev/null
rm -f "$work/data.om"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() { # URL PID
  for _ in $(seq 1 600); do
    curl -sf "$1/-/ready" >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
p_port=$(free_port) c_port=$(free_port)
printf 'global:\n  scrape_interval: 1h\n' > "$work/prometheus.yml"
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prometheus" \
  --storage.tsdb.retention.time=100y --web.listen-address="127.0.0.1:$p_port" \
  >"$work/prometheus.log" 2>&1 &
p_pid=$!
"$src/cairn" --storage.tsdb.path="$work/cairn" --web.listen-address="127.0.0.1:$c_port" \
  >"$work/cairn.log" 2>&1 &
c_pid=$!
trap 'kill $p_pid $c_pid 2>/dev/null || true' EXIT
wait_ready "http://127.0.0.1:$p_port" "$p_pid" || { echo "prometheus did not start"; tail "$work/prometheus.log"; exit 1; }
wait_ready "http://127.0.0.1:$c_port" "$c_pid" || { echo "cairn did not start"; tail "$work/cairn.log"; exit 1; }

run() { # NAME PORT PASS
  "$src/cairn-tool" bench query --url="http://127.0.0.1:$2" --end="$end" --rounds="$rounds" \
    --concurrency="$concurrency" >"$work/$1.$3.out" || true
}
for pass in 1 2; do
  run prometheus "$p_port" "$pass"
  run cairn "$c_port" "$pass"
done
echo "== prometheus ($(prometheus --version 2>&1 | head -n1))"
cat "$work/prometheus.2.out"
echo
echo "== cairn"
cat "$work/cairn.2.out"
echo
echo "== summary ($(nproc) cores, $(date -u +%Y-%m-%d), $series series, concurrency $concurrency)"
python3 - "$work/prometheus.2.out" "$work/cairn.2.out" <<'PY'
import re, sys
def load(path):
    rows, total = {}, None
    for line in open(path):
        m = re.match(r'^(\S+)\s+([\d.]+)\s+[\d.]+\s+[\d.]+\s+([\d.]+)\s', line)
        if m and m.group(1) != 'query':
            rows[m.group(1)] = (float(m.group(2)), float(m.group(3)))
        m = re.search(r'median ([\d.]+) ms.*; (\d+) failed', line)
        if m:
            total = (float(m.group(1)), int(m.group(2)))
    return rows, total
p_rows, p_total = load(sys.argv[1])
c_rows, c_total = load(sys.argv[2])
print(f"{'query (median ms)':28}{'prom inst':>10}{'cairn inst':>11}{'ratio':>7}"
      f"{'prom range':>12}{'cairn range':>12}{'ratio':>7}")
for name, (pi, pr) in p_rows.items():
    ci, cr = c_rows.get(name, (float('nan'), float('nan')))
    print(f"{name:28}{pi:10.2f}{ci:11.2f}{ci / pi:7.2f}{pr:12.2f}{cr:12.2f}{cr / pr:7.2f}")
if p_total and c_total:
    print(f"all queries: median {p_total[0]:.2f} ms (prometheus) vs {c_total[0]:.2f} ms (cairn): "
          f"cairn/prometheus {c_total[0] / p_total[0]:.3f}; failures {p_total[1]} / {c_total[1]}")
    if p_total[1] or c_total[1]:
        print("NOT COMPARABLE: some queries failed (see the first failure above)")
PY
