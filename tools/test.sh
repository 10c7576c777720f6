#!/usr/bin/env bash
# tools/test.sh: the README's test command. Sets up the machine (tools/setup.sh), builds, runs
# every unit and integration test (make check), and closes with "N passed, N failed, N skipped".
#
#   tools/test.sh                 the normal build, in the source tree
#   CAIRN_CONFIGURE_FLAGS=... tools/test.sh   the same with other configure flags
set -euo pipefail
cd "$(dirname "$0")/.."

./tools/setup.sh

status=0
make -j"$(nproc)" check || status=$?

# Count the individual test cases of every test program (tools/test-summary.sh).
tools/test-summary.sh .
if [ "$status" -ne 0 ]; then
  echo "== failing tests (from test-suite.log)"
  sed -n '/^FAIL\|^ERROR/,$p' test-suite.log | head -n 400
fi
exit "$status"
