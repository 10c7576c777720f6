"""Differential test of the PromQL engine against Debian's real `prometheus` on the same samples.

`cairn-tool bench query-data` writes one data set (node and api exporter-like series, one hour
at 30 s) into a Cairn data directory and, sample for sample, into an OpenMetrics file that
`promtool tsdb create-blocks-from openmetrics` turns into Prometheus blocks. Both servers start
on their directories; every query of QUERIES runs on both, as an instant query at three times
and as a range query, and the results must have the same series with the same values (relative
difference under 1e-9).

Debian ships Prometheus 2.42, whose range selectors are closed ([t - r, t]) where 3.x's are
left-open ((t - r, t]), and which orders two extrapolation rules of rate() differently near
the first sample of a series. Evaluation times therefore sit between samples (15 s after one)
and range queries start well after the first sample, where the two versions agree; subqueries
step on sample times, so their inner expressions are instant selectors, which both versions
read alike. topk and bottomk rank values without ties: with ties, Prometheus's choice follows
the order of its input series, which for a range query is a Go map's (random).

Needs promtool and prometheus (Debian package prometheus; tools/test.sh installs it): the test
is skipped without them, or fails when CAIRN_REQUIRE_PEERS=1."""

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cairn_test  # noqa: E402
from cairn_test import CairnProcess, http_request  # noqa: E402

SERIES = 2000
END = int(time.time()) // 60 * 60 - 60
FIRST = END - 3600  # the first sample

QUERIES = [
    'sum by (job) (rate(http_requests_total[5m]))',
    'irate(node_network_receive_bytes_total[5m])',
    'increase(http_requests_total{status="500"}[10m])',
    'avg by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m]))',
    'max by (mode) (rate(node_cpu_seconds_total[5m]))',
    'min by (cpu) (rate(node_cpu_seconds_total[5m]))',
    'count by (cpu) (node_cpu_seconds_total)',
    'stddev by (job) (rate(http_requests_total[5m]))',
    'stdvar without (instance, status) (rate(http_requests_total[5m]))',
    'group by (handler) (http_requests_total)',
    'topk(3, node_memory_MemAvailable_bytes)',
    'topk(5, rate(node_network_receive_bytes_total[5m]))',
    'bottomk(3, rate(node_network_receive_bytes_total[5m]))',
    'quantile by (handler) (0.9, rate(http_requests_total[5m]))',
    'histogram_quantile(0.9, sum by (le, handler) (rate(http_request_duration_seconds_bucket[5m])))',
    'histogram_quantile(0.5, rate(http_request_duration_seconds_bucket{handler="/metrics"}[5m]))',
    'rate(http_request_duration_seconds_sum[5m]) / rate(http_request_duration_seconds_count[5m])',
    'node_memory_MemAvailable_bytes / on (instance) group_left '
    'sum by (instance) (node_network_receive_bytes_total)',
    'sum by (instance, job) (node_network_receive_bytes_total) / ignoring (device) '
    'group_right node_network_receive_bytes_total',
    'rate(http_requests_total[5m]) > bool 1',
    'rate(http_requests_total[5m]) > 1',
    '1 < rate(node_cpu_seconds_total{mode="idle"}[5m]) * 2',
    'node_cpu_seconds_total{mode="idle"} and on (instance, cpu) '
    'node_cpu_seconds_total{mode="user"}',
    'node_cpu_seconds_total{mode="idle", cpu="0"} or node_cpu_seconds_total{mode="user"}',
    'http_requests_total unless on (status) http_requests_total{status="200"}',
    'max_over_time(node_memory_MemAvailable_bytes[10m])',
    'min_over_time(node_memory_MemAvailable_bytes[10m])',
    'avg_over_time(node_memory_MemAvailable_bytes[10m])',
    'sum_over_time(node_memory_MemAvailable_bytes[10m])',
    'count_over_time(node_memory_MemAvailable_bytes[10m])',
    'stddev_over_time(node_memory_MemAvailable_bytes[10m])',
    'quantile_over_time(0.25, node_memory_MemAvailable_bytes[10m])',
    'last_over_time(node_memory_MemAvailable_bytes[10m])',
    'changes(node_memory_MemAvailable_bytes[10m])',
    'resets(http_requests_total[30m])',
    'deriv(node_memory_MemAvailable_bytes[10m])',
    'predict_linear(node_memory_MemAvailable_bytes[10m], 3600)',
    'delta(node_memory_MemAvailable_bytes[10m])',
    'idelta(node_memory_MemAvailable_bytes[10m])',
    'label_replace(node_memory_MemAvailable_bytes, "host", "$1", "instance", "(.*):.*")',
    'label_join(node_memory_MemAvailable_bytes, "both", "/", "instance", "job")',
    'absent(nonexistent{job="x"})',
    'absent(node_memory_MemAvailable_bytes)',
    'node_memory_MemAvailable_bytes offset 10m',
    'rate(http_requests_total{handler="/metrics"}[5m] offset 5m)',
    'max_over_time(sum by (instance) (node_network_receive_bytes_total)[10m:1m])',
    'min_over_time((node_memory_MemAvailable_bytes / 2)[20m:2m] offset 3m)',
    'abs(deriv(node_memory_MemAvailable_bytes[10m]))',
    'round(node_memory_MemAvailable_bytes / 1e6, 0.5)',
    'clamp_max(rate(http_requests_total[5m]), 1)',
    'sqrt(sum by (instance) (rate(node_network_receive_bytes_total[5m]))) '
    '+ on (instance) ln(node_memory_MemAvailable_bytes)',
    'count_values("value", round(rate(http_requests_total[5m])))',
    'timestamp(node_memory_MemAvailable_bytes)',
    'vector(1) + scalar(sum(node_memory_MemAvailable_bytes))',
    'sum without (instance) (rate(http_requests_total[5m]))',
    'node_memory_MemAvailable_bytes{instance=~"host-0000[0-4]:.*"}',
    'http_requests_total{handler!~"/api/v1/(query|series)", status!="200"}',
]

EMPTY = ['absent(node_memory_MemAvailable_bytes)']
INSTANT_TIMES = [END - 15, END - 15 - 7 * 60, END - 15 - 23 * 60]
RANGE = {"start": FIRST + 15 * 60 + 15, "end": END - 15, "step": 60}


def peer(name):
    exe = shutil.which(name)
    if not exe and os.environ.get("CAIRN_REQUIRE_PEERS") == "1":
        raise AssertionError("%s is not installed (Debian package prometheus)" % name)
    return exe


class QueryVsPrometheusTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.prom = None
        cls.cairn = None
        if not peer("promtool") or not peer("prometheus"):
            raise unittest.SkipTest("promtool/prometheus not installed (Debian package prometheus)")
        cls._tmp = tempfile.TemporaryDirectory(prefix="cairn-vs-prometheus-")
        tmp = cls._tmp.name
        om = os.path.join(tmp, "data.om")
        r = cairn_test.run([cairn_test.CAIRN_TOOL, "bench", "query-data", "--series=%d" % SERIES,
                            "--duration=1h", "--interval=30s", "--end=%d" % END,
                            "--out=" + os.path.join(tmp, "cairn"), "--openmetrics=" + om],
                           timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        r = cairn_test.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", om,
                            os.path.join(tmp, "prometheus")], timeout=120)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        with open(os.path.join(tmp, "prometheus.yml"), "w") as f:
            f.write("global:\n  scrape_interval: 1h\n")
        cls.prom_port = cairn_test.free_port()
        cls.prom_log = open(os.path.join(tmp, "prometheus.log"), "w")
        cls.prom = subprocess.Popen(
            ["prometheus", "--config.file=" + os.path.join(tmp, "prometheus.yml"),
             "--storage.tsdb.path=" + os.path.join(tmp, "prometheus"),
             "--storage.tsdb.retention.time=100y",
             "--web.listen-address=127.0.0.1:%d" % cls.prom_port],
            stdout=cls.prom_log, stderr=subprocess.STDOUT, preexec_fn=cairn_test._child_preexec)
        deadline = time.monotonic() + 60
        while True:
            try:
                if http_request(cls.prom_port, "GET", "/-/ready", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if cls.prom.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("prometheus did not start: " +
                                     open(os.path.join(tmp, "prometheus.log")).read()[-3000:])
            time.sleep(0.1)
        cls.cairn = CairnProcess(tmpdir=tmp, data_dir=os.path.join(tmp, "cairn"),
                                 config_text="scrape_configs: []\n")

    @classmethod
    def tearDownClass(cls):
        if cls.prom is not None:
            cls.prom.kill()
            cls.prom.wait()
            cls.prom_log.close()
        if cls.cairn is not None:
            cls.cairn.stop()
            marker = cairn_test.crash_report(cls.cairn.log())
            cls._tmp.cleanup()
            if marker:
                raise AssertionError("cairn stderr contains %r" % marker)

    def query(self, port, path, params):
        status, _, body = http_request(port, "GET", path + "?" + urllib.parse.urlencode(params),
                                       timeout=60)
        doc = json.loads(body)
        self.assertEqual(status, 200, "%s %s on port %d: %s" % (path, params, port, doc))
        return doc["data"]

    @staticmethod
    def points(data):
        """{labels: [(t, value), ...]} of a vector or matrix result."""
        out = {}
        for r in data["result"]:
            key = tuple(sorted(r["metric"].items()))
            pts = r["values"] if "values" in r else [r["value"]]
            out[key] = [(float(t), v) for t, v in pts]
        return out

    @staticmethod
    def same(a, b):
        x, y = float(a), float(b)
        if math.isnan(x) or math.isnan(y):
            return math.isnan(x) and math.isnan(y)
        if x == y:
            return True
        return abs(x - y) <= 1e-9 * max(abs(x), abs(y))

    def compare(self, what, prom, cairn):
        p, c = self.points(prom), self.points(cairn)
        if set(p) != set(c):
            return "%s: series only in Prometheus %s, only in Cairn %s" % (
                what, sorted(set(p) - set(c))[:3], sorted(set(c) - set(p))[:3])
        for key in p:
            if [t for t, _ in p[key]] != [t for t, _ in c[key]]:
                return "%s %s: timestamps %s vs %s" % (what, key, p[key][:3], c[key][:3])
            for (t, a), (_, b) in zip(p[key], c[key]):
                if not self.same(a, b):
                    return "%s %s at %s: Prometheus %s, Cairn %s" % (what, key, t, a, b)
        return None

    def test_queries_match_prometheus(self):
        diffs = []
        empty = []
        for q in QUERIES:
            for t in INSTANT_TIMES:
                params = {"query": q, "time": t}
                prom = self.query(self.prom_port, "/api/v1/query", params)
                cairn = self.query(self.cairn.port, "/api/v1/query", params)
                self.assertEqual(prom["resultType"], cairn["resultType"], q)
                if not prom["result"]:
                    empty.append(q)
                d = self.compare("instant %s at %d" % (q, t), prom, cairn)
                if d:
                    diffs.append(d)
            params = dict(RANGE, query=q)
            prom = self.query(self.prom_port, "/api/v1/query_range", params)
            cairn = self.query(self.cairn.port, "/api/v1/query_range", params)
            d = self.compare("range %s" % q, prom, cairn)
            if d:
                diffs.append(d)
        self.assertEqual(diffs, [], "%d of %d evaluations differ:\n%s" % (
            len(diffs), len(QUERIES) * (len(INSTANT_TIMES) + 1), "\n".join(diffs)))
        # The data set answers: all but EMPTY return something (so the comparison compares).
        self.assertEqual(sorted(set(empty)), sorted(EMPTY))


if __name__ == "__main__":
    cairn_test.main()
