#!/usr/bin/env bash
# tools/test-tsan.sh: builds a copy of the tracked tree with --enable-tsan (ThreadSanitizer;
# jemalloc and pools bypassed) in $CAIRN_TSAN_DIR (default /tmp/cairn-tsan-build) and runs the
# TSDB unit tests (and the metrics registry's) there, then the crash writer (with WAL
# checkpoints) for a few seconds and its verifier. Not part of make check or CI; run it by hand after touching the head's
# concurrency (symbols, series map, guard, stripes, WAL, chunk pool).
#
# Environment:
#   CAIRN_TSAN_DIR            build directory (default /tmp/cairn-tsan-build; wiped first)
#   CAIRN_TSAN_CRASH_SECONDS  how long the crash writer runs before SIGKILL (default 10; 0 skips)
#
# Each TSAN report goes to $CAIRN_TSAN_DIR/tsan-logs/NAME.PID and counts as one failure.
# Closes with "N passed, N failed": Check test cases, plus one failure per TSAN report.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
dir=${CAIRN_TSAN_DIR:-/tmp/cairn-tsan-build}
crash_seconds=${CAIRN_TSAN_CRASH_SECONDS:-10}

CAIRN_SKIP_BUILD=1 "$src/tools/setup.sh"
rm -rf "$dir"
mkdir -p "$dir"
(cd "$src" && git ls-files -z | tar --null -T - -cf -) | tar -xf - -C "$dir"

cd "$dir"
./autogen.sh >/dev/null
./configure -q --enable-tsan
# Without CK_FORK the tests run in one process, so a report names the test's own stack.
nofork_tests="tests/unit/check_tsdb_head tests/unit/check_tsdb_checkpoint
  tests/unit/check_tsdb_querier tests/unit/check_tsdb_wal tests/unit/check_tsdb_chunk_pool
  tests/unit/check_tsdb_chunk_pool_pooled"
fork_tests="tests/unit/check_common_metrics" # has exit tests: needs Check's fork
# shellcheck disable=SC2086
make -j"$(nproc)" $nofork_tests $fork_tests tests/integration/tsdb_crash_writer >build.log 2>&1 ||
  { tail -n 40 build.log; exit 1; }

logs=$dir/tsan-logs
mkdir -p "$logs"
# detect_deadlocks=0: truncation holds all 64 guard slots at once, more locks than TSAN's
# deadlock detector can track (it aborts with a CHECK failure in sanitizer_deadlock_detector.h).
tsan_options() { echo "halt_on_error=0 detect_deadlocks=0 history_size=4 log_path=$logs/$1"; }

# Some kernels map memory where TSAN does not expect it; ASLR off (setarch -R) avoids that.
run=()
if CK_RUN_CASE=none TSAN_OPTIONS="$(tsan_options probe)" ./tests/unit/check_tsdb_wal \
  2>&1 | grep -q 'unexpected memory mapping'; then
  run=(setarch "$(uname -m)" -R)
  echo "test-tsan: TSAN needs ASLR off here; running under setarch -R"
fi
rm -f "$logs"/probe.*

passed=0 failed=0 reports=0
count_reports() { cat "$logs/$1".* 2>/dev/null | grep -c '^WARNING: ThreadSanitizer' || true; }
check_program() { # check_program PATH FORK
  local name rc=0 line t f e n
  name=$(basename "$1")
  CK_FORK=$2 CK_VERBOSITY=normal TSAN_OPTIONS="$(tsan_options "$name")" \
    "${run[@]}" "./$1" >"$logs/$name.out" 2>&1 || rc=$?
  line=$(grep -E '^[0-9]+%: Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+' \
    "$logs/$name.out" | tail -n1 || true)
  n=$(count_reports "$name")
  reports=$((reports + n))
  if [ -n "$line" ]; then
    t=$(echo "$line" | sed 's/.*Checks: \([0-9]*\).*/\1/')
    f=$(echo "$line" | sed 's/.*Failures: \([0-9]*\).*/\1/')
    e=$(echo "$line" | sed 's/.*Errors: \([0-9]*\).*/\1/')
    passed=$((passed + t - f - e))
    failed=$((failed + f + e + n))
  else
    failed=$((failed + 1 + n)) # crashed before Check's summary
    line="no Check summary (exit $rc); see $logs/$name.out"
  fi
  printf '%-32s %s; TSAN reports: %s\n' "$name" "$line" "$n"
}

for t in $nofork_tests; do check_program "$t" no; done
for t in $fork_tests; do check_program "$t" yes; done

if [ "$crash_seconds" -gt 0 ]; then
  db=$dir/crash-db
  rm -rf "$db"
  mkdir -p "$db"
  export TSAN_OPTIONS
  TSAN_OPTIONS=$(tsan_options tsdb_crash_writer)
  # Small segments and a truncation every 20 ms, as in test_tsdb_crash.py: the writers race
  # WAL checkpoints and segment deletion.
  CAIRN_CRASH_WAL_SEGMENT=65536 CAIRN_CRASH_CHECKPOINT_MS=20 "${run[@]}" \
    ./tests/integration/tsdb_crash_writer write "$db/db" "$db/ack" 1 \
    >"$logs/crash_write.out" 2>&1 &
  pid=$!
  sleep "$crash_seconds"
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rc=0
  "${run[@]}" ./tests/integration/tsdb_crash_writer verify "$db/db" "$db/ack" \
    >"$logs/crash_verify.out" 2>&1 || rc=$?
  n=$(count_reports tsdb_crash_writer)
  reports=$((reports + n))
  if [ "$rc" -eq 0 ] && grep -q '^verify: OK' "$logs/crash_verify.out"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
  fi
  failed=$((failed + n))
  printf '%-32s %s acknowledged batches, verify exit %s; TSAN reports: %s\n' \
    "tsdb_crash_writer (${crash_seconds}s)" "$(wc -l <"$db/ack" 2>/dev/null || echo 0)" "$rc" "$n"
fi

if [ "$reports" -gt 0 ]; then
  echo "== TSAN reports ($reports), full text in $logs:"
  cat "$logs"/*.[0-9]* | grep -E '^SUMMARY: ThreadSanitizer' | sort | uniq -c
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
