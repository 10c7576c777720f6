#!/bin/sh
# tests/promql/run-promqltest.sh: the make-check test that runs Prometheus's promqltest corpus
# (../shared/conformance/promql, or $CAIRN_SHARED_DIR/conformance/promql) through
# tests/promql/promqltest. Fails unless every evaluation that is not skipped passes; exits 77
# (skipped) when the corpus is not there.
set -u
srcdir=${CAIRN_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
shared=${CAIRN_SHARED_DIR:-$srcdir/../shared}
corpus=$shared/conformance/promql
runner=${CAIRN_PROMQLTEST:-./tests/promql/promqltest}

if [ ! -d "$corpus" ]; then
    echo "SKIP: no promqltest corpus at $corpus"
    exit 77
fi
if [ ! -x "$runner" ]; then
    echo "FAIL: $runner not built"
    exit 1
fi
exec "$runner" "$corpus"
