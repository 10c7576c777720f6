#!/usr/bin/env bash
# tools/test.sh: the README's test command. Sets up the machine (tools/setup.sh), builds, runs
# every unit and integration test (make check), and closes with "N passed, N failed, N skipped".
#
#   tools/test.sh                 the normal build, in the source tree
#   CAIRN_CONFIGURE_FLAGS=... tools/test.sh   the same with other configure flags
set -euo pipefail
cd "$(dirname "$0")/.."

./tools/setup.sh
# Peers the integration tests run against: Debian's promtool (package prometheus). Installing
# the package would start its service; a policy-rc.d keeps it stopped.
if ! command -v promtool >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
  $sudo chmod +x /usr/sbin/policy-rc.d
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus \
    >/dev/null
  $sudo rm -f /usr/sbin/policy-rc.d
fi
# Tests that need a peer fail instead of skipping when it is missing.
export CAIRN_REQUIRE_PEERS=1

status=0
make -j"$(nproc)" check || status=$?

# Count the individual test cases of every test program (tools/test-summary.sh).
tools/test-summary.sh .
if [ "$status" -ne 0 ]; then
  echo "== failing tests (from test-suite.log)"
  sed -n '/^FAIL\|^ERROR/,$p' test-suite.log | head -n 400
fi
exit "$status"
