#!/usr/bin/env bash
# tools/test-summary.sh DIR...: adds up the individual test cases of a `make check` run in each
# build directory DIR and prints "N passed, N failed, N skipped".
# Check suites log "NN%: Checks: T, Failures: F, Errors: E"; the Python integration tests log
# "P passed, F failed, S skipped". A test program whose .trs says FAIL/ERROR but whose log has
# no such line (it crashed) counts as one failure.
set -uo pipefail
pass=0 fail=0 skip=0
for dir in "$@"; do
  while IFS= read -r trs; do
    log=${trs%.trs}.log
    result=$(sed -n 's/^:test-result: //p' "$trs" | head -n1)
    line=$(grep -E '^[0-9]+%: Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+' "$log" 2>/dev/null | tail -n1)
    if [ -n "$line" ]; then
      t=$(echo "$line" | sed 's/.*Checks: \([0-9]*\).*/\1/')
      f=$(echo "$line" | sed 's/.*Failures: \([0-9]*\).*/\1/')
      e=$(echo "$line" | sed 's/.*Errors: \([0-9]*\).*/\1/')
      pass=$((pass + t - f - e)); fail=$((fail + f + e))
      continue
    fi
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?$' "$log" 2>/dev/null | tail -n1)
    if [ -n "$line" ]; then
      p=$(echo "$line" | sed 's/^\([0-9]*\) passed.*/\1/')
      f=$(echo "$line" | sed 's/.* \([0-9]*\) failed.*/\1/')
      s=$(echo "$line" | sed -n 's/.* \([0-9]*\) skipped$/\1/p')
      pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + ${s:-0}))
      continue
    fi
    case "$result" in
      PASS|XFAIL) pass=$((pass + 1)) ;;
      SKIP) skip=$((skip + 1)) ;;
      *) fail=$((fail + 1)) ;;
    esac
  done < <(find "$dir" -name '*.trs' -not -path '*/_build/*' 2>/dev/null | sort)
done
echo "$pass passed, $fail failed, $skip skipped"
