#!/usr/bin/env bash
# tools/test-summary.sh LOG...: adds up automake test-suite.log summaries and prints
# "N passed, N failed, N skipped" (XFAIL counts as passed, ERROR and XPASS as failed).
set -euo pipefail
pass=0 fail=0 skip=0
for log in "$@"; do
  [ -f "$log" ] || { fail=$((fail + 1)); continue; }
  get() { sed -n "s/^# $1: *\([0-9][0-9]*\)$/\1/p" "$log" | head -n1; }
  p=$(get PASS) x=$(get XFAIL) f=$(get FAIL) e=$(get ERROR) xp=$(get XPASS) s=$(get SKIP)
  pass=$((pass + ${p:-0} + ${x:-0}))
  fail=$((fail + ${f:-0} + ${e:-0} + ${xp:-0}))
  skip=$((skip + ${s:-0}))
done
echo "$pass passed, $fail failed, $skip skipped"
