#!/usr/bin/env bash
# tools/fuzz.sh [TARGET [SECONDS]]: builds the libFuzzer targets (clang, --enable-fuzzers, with
# ASan+UBSan) in $CAIRN_FUZZ_DIR (default /tmp/cairn-fuzz) and runs TARGET (default: every
# target) for SECONDS each (default 60). Corpora grow in $CAIRN_FUZZ_DIR/corpus/TARGET, seeded
# from tests/. A crash leaves its input in $CAIRN_FUZZ_DIR and a non-zero exit.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
dir=${CAIRN_FUZZ_DIR:-/tmp/cairn-fuzz}
target=${1:-all}
seconds=${2:-60}

CAIRN_SKIP_BUILD=1 "$src/tools/setup.sh"
if ! command -v clang >/dev/null || ! dpkg-query -W libclang-rt-14-dev >/dev/null 2>&1; then
  apt-get install -y -qq --no-install-recommends clang libclang-rt-14-dev
fi
mkdir -p "$dir/src"
(cd "$src" && git ls-files -z | tar --null -T - -cf -) | tar -xf - -C "$dir/src"
cd "$dir/src"
[ -f Makefile ] || { ./autogen.sh >/dev/null && ./configure -q CC=clang --enable-fuzzers; }
make -j"$(nproc)" fuzzers

targets=$(ls tests/fuzz/*.c | xargs -n1 basename | sed 's/\.c$//')
[ "$target" = all ] || targets=$target
for t in $targets; do
  corpus="$dir/corpus/$t"
  mkdir -p "$corpus"
  case "$t" in
    fuzz_config) cp -n "$src"/tests/unit/data/config/*.yml "$corpus"/ 2>/dev/null || true ;;
    fuzz_promql_parse)
      # One seed per eval query of the PromQL conformance corpus.
      shared=${CAIRN_SHARED_DIR:-$src/../shared}
      i=0
      sed -nE 's/^eval[a-z_]* (instant at [^ ]+|range from [^ ]+ to [^ ]+ step [^ ]+) //p' \
          "$shared"/conformance/promql/*.test 2>/dev/null | while IFS= read -r q; do
        i=$((i + 1)); [ -e "$corpus/seed-$i" ] || printf '%s' "$q" > "$corpus/seed-$i"
      done ;;
  esac
  echo "== $t for ${seconds}s"
  (cd "$dir" && "$dir/src/tests/fuzz/$t" -max_total_time="$seconds" -print_final_stats=1 \
      -max_len=65536 "$corpus")
done
