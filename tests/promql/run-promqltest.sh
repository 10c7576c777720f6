#!/bin/sh
# tests/promql/run-promqltest.sh: the make-check test that runs Prometheus's promqltest corpus
# (../shared/conformance/promql, or $CAIRN_SHARED_DIR/conformance/promql) through
# tests/promql/promqltest, with Cairn's own files in tests/promql/testdata. Fails unless every
# evaluation that is not skipped passes; without the corpus, runs Cairn's files alone.
set -u
srcdir=${CAIRN_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
shared=${CAIRN_SHARED_DIR:-$srcdir/../shared}
corpus=$shared/conformance/promql
runner=${CAIRN_PROMQLTEST:-./tests/promql/promqltest}

own=$srcdir/tests/promql/testdata
if [ ! -x "$runner" ]; then
    echo "FAIL: $runner not built"
    exit 1
fi
if [ ! -d "$corpus" ]; then
    echo "NOTE: no promqltest corpus at $corpus; running Cairn's own files only"
    exec "$runner" "$own"
fi
exec "$runner" "$corpus" "$own"
