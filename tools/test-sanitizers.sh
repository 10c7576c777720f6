#!/usr/bin/env bash
# tools/test-sanitizers.sh: builds a copy of the tracked tree with --enable-sanitizers
# (AddressSanitizer + UndefinedBehaviorSanitizer + LeakSanitizer; jemalloc and pools bypassed)
# in $CAIRN_SANITIZER_DIR (default /tmp/cairn-sanitizers) and runs the unit and integration
# tests there. A copy, because the source tree holds the normal in-tree build.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
dir=${CAIRN_SANITIZER_DIR:-/tmp/cairn-sanitizers}

CAIRN_SKIP_BUILD=1 "$src/tools/setup.sh"
rm -rf "$dir"
mkdir -p "$dir"
(cd "$src" && git ls-files -z | tar --null -T - -cf -) | tar -xf - -C "$dir"
# Tests find ../shared relative to the source tree.
export CAIRN_SHARED_DIR=${CAIRN_SHARED_DIR:-$src/../shared}

cd "$dir"
./autogen.sh >/dev/null
./configure -q --enable-sanitizers
export CAIRN_SANITIZERS=1
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
status=0
make -j"$(nproc)" check || status=$?
"$src/tools/test-summary.sh" .
if [ "$status" -ne 0 ]; then
  echo "== failing tests (sanitizer build)"
  sed -n '/^FAIL\|^ERROR/,$p' test-suite.log | head -n 400
fi
echo "$dir" > "$src/.sanitizer-build-dir"
exit "$status"
