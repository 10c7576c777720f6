"""Integration tests of the Prometheus HTTP API of the `cairn` daemon: /api/v1/query,
/query_range, /series, /labels, /label/<name>/values, /status/*, /export and /federate, their
parameter errors, gzip, methods, and Debian's `promtool query` against the daemon.

The daemon has no write endpoint yet: the test writes its data set with api_data_writer (built
next to this script, tests/integration/api_data_writer) into a data directory, then starts the
daemon on it, once for the whole class. Sample times are aligned to 15 s and end at the last
15 s boundary before the start, so that /federate (5 minutes of lookback) sees them.

Run by `make check` as `python3 tests/integration/test_api.py`; see cairn_test.py."""

import gzip
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cairn_test  # noqa: E402
from cairn_test import CairnProcess, http_request  # noqa: E402

WRITER = os.environ.get("CAIRN_API_DATA_WRITER") or os.path.join(
    os.path.dirname(cairn_test.CAIRN_BINARY), "tests", "integration", "api_data_writer")

STEP_MS = 15000
POINTS = 21  # samples at BASE + i * STEP_MS, i = 0..20
NOW_MS = int(time.time() * 1000)
LAST_MS = NOW_MS // STEP_MS * STEP_MS
BASE_MS = LAST_MS - (POINTS - 1) * STEP_MS
OLD_MS = LAST_MS - 2 * 3600 * 1000  # outside every lookback window

PATH_VALUE = 'a"b\\c\nd'  # quote, backslash and newline in a label value
HTML_VALUE = "<b>&"
LONG_VALUE = "x" * 200

CONFIG = """\
global:
  external_labels:
    region: eu
scrape_configs: []
"""

SPECIALS = [("nan", "NaN"), ("inf", "+Inf"), ("ninf", "-Inf"), ("tiny", "1e-07"),
            ("huge", "1e+21"), ("sum", repr(0.1 + 0.2))]


def escape_field(s):
    return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def data_lines():
    """The data set as api_data_writer reads it, plus a description for the checks."""
    lines = []

    def add(t, v, labels):
        fields = ["%d" % t, v] + ["%s=%s" % (k, escape_field(val)) for k, val in labels]
        lines.append("\t".join(fields))

    for i in range(3):  # old data first: the head takes it before newer samples arrive
        add(OLD_MS + i * STEP_MS, "1", [("__name__", "old_metric"), ("x", "1")])
    for i in range(POINTS):
        t = BASE_MS + i * STEP_MS
        add(t, "%d" % i, [("__name__", "up"), ("instance", "a:1"), ("job", "node")])
        add(t, "stale" if i == POINTS - 1 else "1",
            [("__name__", "up"), ("instance", "b:2"), ("job", "node")])
        add(t, repr(i * 1.5), [("__name__", "http_requests_total"), ("job", "api"),
                                ("path", PATH_VALUE)])
        add(t, "7", [("__name__", "html"), ("v", HTML_VALUE)])
        for kind, v in SPECIALS:
            add(t, v.replace("1e-07", "1e-7"), [("__name__", "special"), ("kind", kind)])
        for k in range(15):
            add(t, "%d" % k, [("__name__", "many"), ("i", "%02d" % k), ("long", LONG_VALUE)])
    return "\n".join(lines) + "\n"


def sample_time(ms):
    """A timestamp as the API writes it for vector and matrix points, parsed back."""
    return ms / 1000.0


class ApiTest(unittest.TestCase):
    """One daemon for all tests; none of them changes its data."""

    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory(prefix="cairn-api-test-")
        cls.tmp = cls._tmp.name
        cls.data_dir = os.path.join(cls.tmp, "data")
        result = subprocess.run([WRITER, cls.data_dir], input=data_lines(), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        if result.returncode != 0:
            raise AssertionError("api_data_writer failed: %s %s" % (result.stdout, result.stderr))
        cls.proc = CairnProcess(config_text=CONFIG, tmpdir=cls.tmp, data_dir=cls.data_dir)

    @classmethod
    def tearDownClass(cls):
        cls.proc.stop()
        log = cls.proc.log()
        cls._tmp.cleanup()
        marker = cairn_test.crash_report(log)
        if marker:
            raise AssertionError("cairn stderr contains %r:\n%s" % (marker, log[-6000:]))

    # -- helpers -----------------------------------------------------------------------------

    def get(self, path, params=None, headers=None):
        if params is not None:
            path += "?" + urllib.parse.urlencode(params)
        return self.proc.request("GET", path, headers=headers)

    def post(self, path, params, headers=None):
        h = {"Content-Type": "application/x-www-form-urlencoded"}
        h.update(headers or {})
        return self.proc.request("POST", path, body=urllib.parse.urlencode(params), headers=h)

    def ok(self, path, params=None, method="GET"):
        """The data of a success envelope; checks status, content type and shape."""
        if method == "GET":
            status, headers, body = self.get(path, params)
        else:
            status, headers, body = self.post(path, params)
        self.assertEqual(status, 200, body)
        self.assertEqual(headers.get("Content-Type"), "application/json")
        doc = json.loads(body)
        self.assertEqual(doc["status"], "success", doc)
        self.assertNotIn("errorType", doc)
        for key in ("warnings", "infos"):
            if key in doc:
                self.assertTrue(doc[key], "%s present but empty: %r" % (key, body))
        return doc

    def error(self, path, params, status, error_type, message=None, prefix=None, method="GET"):
        if method == "GET":
            got_status, headers, body = self.get(path, params)
        else:
            got_status, headers, body = self.post(path, params)
        self.assertEqual(got_status, status, body)
        self.assertEqual(headers.get("Content-Type"), "application/json")
        doc = json.loads(body)
        self.assertEqual(doc["status"], "error")
        self.assertEqual(doc["errorType"], error_type, doc)
        self.assertNotIn("data", doc)
        if message is not None:
            self.assertEqual(doc["error"], message)
        if prefix is not None:
            self.assertTrue(doc["error"].startswith(prefix), doc["error"])
        return doc

    # -- /api/v1/series ----------------------------------------------------------------------

    def test_series(self):
        doc = self.ok("/api/v1/series", {"match[]": "up"})
        self.assertEqual(doc["data"], [
            {"__name__": "up", "instance": "a:1", "job": "node"},
            {"__name__": "up", "instance": "b:2", "job": "node"},
        ])
        # Overlapping selectors give each series once, in label order.
        doc = self.ok("/api/v1/series", [("match[]", '{job="node"}'), ("match[]", "up"),
                                         ("match[]", "http_requests_total")])
        self.assertEqual(doc["data"], [
            {"__name__": "http_requests_total", "job": "api", "path": PATH_VALUE},
            {"__name__": "up", "instance": "a:1", "job": "node"},
            {"__name__": "up", "instance": "b:2", "job": "node"},
        ])
        # POST form, and the same in the query string.
        doc = self.ok("/api/v1/series", {"match[]": "up"}, method="POST")
        self.assertEqual(len(doc["data"]), 2)
        # Time range: the old series only when the range reaches back to it.
        self.assertEqual(self.ok("/api/v1/series", {"match[]": "old_metric"})["data"],
                         [{"__name__": "old_metric", "x": "1"}])
        self.assertEqual(self.ok("/api/v1/series", {"match[]": "old_metric",
                                                    "start": "%.3f" % (BASE_MS / 1000)})["data"],
                         [])
        self.assertEqual(len(self.ok("/api/v1/series", {
            "match[]": "old_metric", "start": "%.3f" % (OLD_MS / 1000),
            "end": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(OLD_MS / 1000 + 1))})["data"]),
            1)

    def test_series_limit(self):
        doc = self.ok("/api/v1/series", {"match[]": "many", "limit": "3"})
        self.assertEqual([s["i"] for s in doc["data"]], ["00", "01", "02"])
        self.assertEqual(doc["warnings"], ["results truncated due to limit"])
        doc = self.ok("/api/v1/series", {"match[]": "many", "limit": "15"})
        self.assertEqual(len(doc["data"]), 15)
        self.assertNotIn("warnings", doc)

    def test_series_errors(self):
        self.error("/api/v1/series", {}, 400, "bad_data", "no match[] parameter provided")
        self.error("/api/v1/series", {"match[]": "up{"}, 400, "bad_data",
                   prefix='invalid parameter "match[]": ')
        self.error("/api/v1/series", {"match[]": "up[5m]"}, 400, "bad_data",
                   prefix='invalid parameter "match[]": ')
        self.error("/api/v1/series", {"match[]": 'up', "start": "abc"}, 400, "bad_data",
                   "invalid parameter \"start\": Invalid time value for 'start': "
                   "cannot parse \"abc\" to a valid timestamp")
        self.error("/api/v1/series", {"match[]": 'up', "end": "2015-13-01T00:00:00Z"}, 400,
                   "bad_data", "invalid parameter \"end\": Invalid time value for 'end': "
                   "cannot parse \"2015-13-01T00:00:00Z\" to a valid timestamp")
        self.error("/api/v1/series", {"match[]": 'up', "limit": "-1"}, 400, "bad_data",
                   'invalid parameter "limit": limit must be non-negative')
        self.error("/api/v1/series", {"match[]": 'up', "limit": "x"}, 400, "bad_data",
                   'invalid parameter "limit": strconv.Atoi: parsing "x": invalid syntax')

    # -- /api/v1/labels and /api/v1/label/<name>/values ---------------------------------------

    def test_labels(self):
        doc = self.ok("/api/v1/labels")
        self.assertEqual(doc["data"], ["__name__", "i", "instance", "job", "kind", "long", "path",
                                       "v", "x"])
        doc = self.ok("/api/v1/labels", [("match[]", "special"), ("match[]", "html")])
        self.assertEqual(doc["data"], ["__name__", "kind", "v"])
        doc = self.ok("/api/v1/labels", {"match[]": "up"}, method="POST")
        self.assertEqual(doc["data"], ["__name__", "instance", "job"])
        doc = self.ok("/api/v1/labels", {"limit": "2"})
        self.assertEqual(doc["data"], ["__name__", "i"])
        self.assertEqual(doc["warnings"], ["results truncated due to limit"])
        self.assertEqual(self.ok("/api/v1/labels", {"match[]": "nonexistent"})["data"], [])

    def test_label_values(self):
        self.assertEqual(self.ok("/api/v1/label/job/values")["data"], ["api", "node"])
        self.assertEqual(self.ok("/api/v1/label/__name__/values")["data"],
                         ["html", "http_requests_total", "many", "old_metric", "special", "up"])
        self.assertEqual(self.ok("/api/v1/label/instance/values",
                                 [("match[]", '{instance="b:2"}'), ("match[]", "http_requests_total")])
                         ["data"], ["b:2"])
        self.assertEqual(self.ok("/api/v1/label/path/values")["data"], [PATH_VALUE])
        self.assertEqual(self.ok("/api/v1/label/nonexistent/values")["data"], [])
        doc = self.ok("/api/v1/label/i/values", {"limit": "4"})
        self.assertEqual(doc["data"], ["00", "01", "02", "03"])
        self.assertEqual(doc["warnings"], ["results truncated due to limit"])

    def test_label_values_errors(self):
        self.error("/api/v1/label/a-b/values", {}, 400, "bad_data", 'invalid label name: "a-b"')
        self.error("/api/v1/label/1a/values", {}, 400, "bad_data", 'invalid label name: "1a"')
        self.error("/api/v1/label/job/values", {"match[]": "{"}, 400, "bad_data",
                   prefix='invalid parameter "match[]": ')
        self.error("/api/v1/label/job/values", {"start": "x"}, 400, "bad_data",
                   "invalid parameter \"start\": Invalid time value for 'start': "
                   "cannot parse \"x\" to a valid timestamp")

    def test_json_escaping(self):
        """Label values with quotes, backslashes, newlines and HTML characters, escaped as Go's
        encoding/json does."""
        status, _, body = self.get("/api/v1/series", {"match[]": "html"})
        self.assertEqual(status, 200)
        self.assertIn(b'"v":"\\u003cb\\u003e\\u0026"', body)
        self.assertEqual(json.loads(body)["data"], [{"__name__": "html", "v": HTML_VALUE}])
        status, _, body = self.get("/api/v1/label/path/values")
        self.assertIn(b'"a\\"b\\\\c\\nd"', body)

    # -- /api/v1/status ------------------------------------------------------------------------

    def test_status_buildinfo(self):
        data = self.ok("/api/v1/status/buildinfo")["data"]
        self.assertEqual(sorted(data), sorted(["version", "revision", "branch", "buildUser",
                                               "buildDate", "goVersion"]))
        self.assertRegex(data["version"], r"^\d+\.\d+\.\d+")
        for v in data.values():
            self.assertIsInstance(v, str)

    def test_status_runtimeinfo(self):
        data = self.ok("/api/v1/status/runtimeinfo")["data"]
        rfc3339 = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$"
        self.assertRegex(data["startTime"], rfc3339)
        self.assertRegex(data["serverTime"], rfc3339)
        self.assertRegex(data["lastConfigTime"], rfc3339)
        self.assertEqual(data["CWD"], os.path.realpath(self.tmp))
        self.assertIs(data["reloadConfigSuccess"], True)
        self.assertEqual(data["storageRetention"], "15d")
        self.assertEqual(data["corruptionCount"], 0)
        self.assertGreaterEqual(data["goroutineCount"], 1)
        self.assertGreaterEqual(data["GOMAXPROCS"], 1)

    def test_status_flags(self):
        status, _, body = self.get("/api/v1/status/flags")
        self.assertEqual(status, 200)
        pairs = json.loads(body, object_pairs_hook=list)[1][1]
        names = [k for k, _ in pairs]
        self.assertEqual(names, sorted(names), "flags are not in sorted order")
        flags = dict(pairs)
        self.assertEqual(flags["storage.tsdb.path"], self.data_dir)
        self.assertEqual(flags["query.lookback-delta"], "5m")
        self.assertEqual(flags["query.max-samples"], "50000000")
        self.assertIn("web.listen-address", flags)

    def test_status_tsdb(self):
        data = self.ok("/api/v1/status/tsdb")["data"]
        head = data["headStats"]
        series = 1 + 2 + 1 + 1 + len(SPECIALS) + 15
        self.assertEqual(head["numSeries"], series)
        self.assertEqual(head["minTime"], OLD_MS)
        self.assertEqual(head["maxTime"], LAST_MS)
        self.assertGreaterEqual(head["chunkCount"], series)
        # name=value pairs: 6 names, x=1, instance a/b, job api/node, path, v, 6 kinds, 15 i,
        # one long.
        self.assertEqual(head["numLabelPairs"], 6 + 1 + 2 + 2 + 1 + 1 + len(SPECIALS) + 15 + 1)
        self.assertEqual(data["seriesCountByMetricName"][:3], [
            {"name": "many", "value": 15}, {"name": "special", "value": len(SPECIALS)},
            {"name": "up", "value": 2}])
        self.assertEqual(len(data["seriesCountByMetricName"]), 6)
        self.assertEqual(data["labelValueCountByLabelName"][0], {"name": "i", "value": 15})
        self.assertEqual(data["memoryInBytesByLabelName"][0], {"name": "long", "value": 200})
        self.assertEqual(data["seriesCountByLabelValuePair"][:2], [
            {"name": "__name__=many", "value": 15},
            {"name": "long=" + LONG_VALUE, "value": 15}])
        for key in ("seriesCountByMetricName", "labelValueCountByLabelName",
                    "memoryInBytesByLabelName", "seriesCountByLabelValuePair"):
            self.assertLessEqual(len(data[key]), 10)
            values = [e["value"] for e in data[key]]
            self.assertEqual(values, sorted(values, reverse=True))
        data = self.ok("/api/v1/status/tsdb", {"limit": "1"})["data"]
        self.assertEqual(data["seriesCountByMetricName"], [{"name": "many", "value": 15}])
        self.error("/api/v1/status/tsdb", {"limit": "0"}, 400, "bad_data",
                   "limit must be a positive number")

    # -- /federate -------------------------------------------------------------------------------

    def federate(self, matches):
        status, headers, body = self.get("/federate", [("match[]", m) for m in matches])
        self.assertEqual(status, 200, body)
        self.assertEqual(headers.get("Content-Type"), "text/plain; version=0.0.4; charset=utf-8")
        return body.decode()

    def test_federate(self):
        text = self.federate(["up", "http_requests_total", '{__name__="special"}', "old_metric"])
        lines = text.splitlines()
        ts = "%d" % LAST_MS
        # Grouped by metric name, each group after its TYPE line; b:2 went stale and old_metric
        # is outside the lookback delta; external labels follow the series' own labels, and
        # instance="" is added where the series has none.
        expected = [
            "# TYPE http_requests_total untyped",
            'http_requests_total{job="api",path="a\\"b\\\\c\\nd",instance="",region="eu"} 30 ' + ts,
            "# TYPE special untyped",
        ]
        special = {"huge": "1e+21", "inf": "+Inf", "nan": "NaN", "ninf": "-Inf",
                   "sum": "0.30000000000000004", "tiny": "1e-07"}
        for kind in sorted(special):
            expected.append('special{kind="%s",instance="",region="eu"} %s %s'
                            % (kind, special[kind], ts))
        expected += [
            "# TYPE up untyped",
            'up{instance="a:1",job="node",region="eu"} 20 ' + ts,
        ]
        self.assertEqual(lines, expected)
        self.assertTrue(text.endswith("\n"))

    def test_federate_no_match_and_errors(self):
        self.assertEqual(self.federate([]), "")
        self.assertEqual(self.federate(["nonexistent"]), "")
        status, headers, body = self.get("/federate", {"match[]": "up{"})
        self.assertEqual(status, 400)
        self.assertTrue(headers.get("Content-Type").startswith("text/plain"))
        self.assertRegex(body.decode(), r"^\d+:\d+: parse error: .*\n$")

    # -- /api/v1/export ---------------------------------------------------------------------------

    def export(self, params):
        status, headers, body = self.get("/api/v1/export", params)
        self.assertEqual(status, 200, body)
        self.assertEqual(headers.get("Content-Type"), "application/stream+json")
        text = body.decode()
        self.assertTrue(text == "" or text.endswith("\n"))
        return [json.loads(line) for line in text.splitlines()]

    def test_export(self):
        times = [BASE_MS + i * STEP_MS for i in range(POINTS)]
        rows = self.export({"match[]": "up"})
        self.assertEqual(rows, [
            {"metric": {"__name__": "up", "instance": "a:1", "job": "node"},
             "values": list(range(POINTS)), "timestamps": times},
            # The stale marker at the end is not exported.
            {"metric": {"__name__": "up", "instance": "b:2", "job": "node"},
             "values": [1] * (POINTS - 1), "timestamps": times[:-1]},
        ])
        rows = self.export([("match[]", '{__name__="special",kind=~"nan|inf|ninf|tiny"}'),
                            ("match[]", '{kind="tiny"}'), ("start", "%d" % (LAST_MS // 1000))])
        self.assertEqual([r["metric"]["kind"] for r in rows], ["inf", "nan", "ninf", "tiny"])
        self.assertEqual([r["timestamps"] for r in rows], [[LAST_MS]] * 4)
        self.assertEqual([r["values"] for r in rows], [["Infinity"], [None], ["-Infinity"], [1e-7]])
        status, _, body = self.get("/api/v1/export", {"match[]": "special"})
        self.assertIn(b'"values":[1e-7,', body)
        self.error("/api/v1/export", {}, 400, "bad_data", "no match[] parameter provided")
        self.assertEqual(self.export({"match[]": "up", "end": "%d" % (BASE_MS // 1000 - 1)}), [])

    # -- transport ---------------------------------------------------------------------------------

    def test_gzip(self):
        params = {"match[]": "many"}
        status, headers, plain = self.get("/api/v1/series", params)
        self.assertEqual(status, 200)
        self.assertGreater(len(plain), 2000)
        self.assertIsNone(headers.get("Content-Encoding"))
        status, headers, body = self.get("/api/v1/series", params,
                                         headers={"Accept-Encoding": "gzip"})
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("Content-Encoding"), "gzip")
        self.assertEqual(gzip.decompress(body), plain)
        self.assertLess(len(body), len(plain))

    def test_methods_and_unknown_paths(self):
        for method, path in (("PUT", "/api/v1/query"), ("DELETE", "/api/v1/labels"),
                             ("POST", "/api/v1/status/flags"), ("POST", "/federate"),
                             ("POST", "/api/v1/label/job/values")):
            with self.subTest(method=method, path=path):
                status, headers, _ = self.proc.request(method, path)
                self.assertEqual(status, 405)
                self.assertIn("GET", headers.get("Allow"))
        for path in ("/api/v1/nonexistent", "/api/v1/label/job", "/api/v1/label/job/values/x",
                     "/api/v1/status/config2"):
            with self.subTest(path=path):
                self.error(path, None, 404, "not_found", "unknown API endpoint: " + path)

    def test_post_body_wins_over_query_string(self):
        """Go's FormValue takes a body value before the query string's."""
        status, _, body = self.proc.request(
            "POST", "/api/v1/labels?limit=1", body="limit=2",
            headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["data"], ["__name__", "i"])
        # Without the form content type the body is not a form.
        status, _, body = self.proc.request(
            "POST", "/api/v1/labels?limit=1", body="limit=2", headers={"Content-Type": "text/plain"})
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["data"], ["__name__"])
        # Repeated names keep all their values, the body's first.
        status, _, body = self.proc.request(
            "POST", "/api/v1/series?match[]=html", body="match[]=old_metric",
            headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual([s["__name__"] for s in json.loads(body)["data"]],
                         ["html", "old_metric"])
        # Percent-escapes and '+' in the body.
        status, _, body = self.proc.request(
            "POST", "/api/v1/series", body="match%5B%5D=%7Bjob%3D%22node%22%2Cinstance%3D%22a%3A1%22%7D",
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
        self.assertEqual(json.loads(body)["data"],
                         [{"__name__": "up", "instance": "a:1", "job": "node"}])

    # -- /api/v1/query and /api/v1/query_range: parameters ----------------------------------------

    def test_query_parameter_errors(self):
        q = "/api/v1/query"
        self.error(q, {"query": "up", "time": "abc"}, 400, "bad_data",
                   "invalid parameter \"time\": Invalid time value for 'time': "
                   "cannot parse \"abc\" to a valid timestamp")
        self.error(q, {"query": "up", "timeout": "abc"}, 400, "bad_data",
                   'invalid parameter "timeout": cannot parse "abc" to a valid duration')
        self.error(q, {"query": "up", "lookback_delta": "1x"}, 400, "bad_data",
                   'error parsing lookback delta duration: cannot parse "1x" to a valid duration')
        self.error(q, {"query": "up", "limit": "-5"}, 400, "bad_data",
                   'invalid parameter "limit": limit must be non-negative')

    def test_query_range_parameter_errors(self):
        r = "/api/v1/query_range"
        base = {"query": "up", "start": "100", "end": "200", "step": "15"}

        def with_(**kw):
            d = dict(base)
            d.update(kw)
            return {k: v for k, v in d.items() if v is not None}

        self.error(r, with_(start=None), 400, "bad_data",
                   'invalid parameter "start": cannot parse "" to a valid timestamp')
        self.error(r, with_(end="x"), 400, "bad_data",
                   'invalid parameter "end": cannot parse "x" to a valid timestamp')
        self.error(r, with_(end="99.999"), 400, "bad_data",
                   'invalid parameter "end": end timestamp must not be before start time')
        self.error(r, with_(step=None), 400, "bad_data",
                   'invalid parameter "step": cannot parse "" to a valid duration')
        self.error(r, with_(step="1x"), 400, "bad_data",
                   'invalid parameter "step": cannot parse "1x" to a valid duration')
        for step in ("0", "-15", "0s", "0.0001"):
            self.error(r, with_(step=step), 400, "bad_data",
                       'invalid parameter "step": zero or negative query resolution step widths '
                       'are not accepted. Try a positive integer')
        self.error(r, with_(start="0", end="11001", step="1"), 400, "bad_data",
                   "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing "
                   "the query resolution (?step=XX)")
        self.error(r, with_(start="0", end="1101", step="100ms"), 400, "bad_data",
                   prefix="exceeded maximum resolution of 11,000 points")
        self.error(r, with_(timeout="x"), 400, "bad_data",
                   'invalid parameter "timeout": cannot parse "x" to a valid duration')
        self.error(r, with_(limit="1.5"), 400, "bad_data",
                   'invalid parameter "limit": strconv.Atoi: parsing "1.5": invalid syntax')

    # -- /api/v1/query and /api/v1/query_range: results (need the engine) --------------------------

    def test_query_instant_vector(self):
        doc = self.ok("/api/v1/query", {"query": "up", "time": "%.3f" % (LAST_MS / 1000)})
        # b:2's last sample is a stale marker: it has no value at LAST_MS.
        self.assertEqual(doc["data"], {"resultType": "vector", "result": [
            {"metric": {"__name__": "up", "instance": "a:1", "job": "node"},
             "value": [sample_time(LAST_MS), "20"]}]})
        t = LAST_MS - STEP_MS
        doc = self.ok("/api/v1/query", {"query": "up", "time": "%.3f" % (t / 1000)},
                      method="POST")
        self.assertEqual([r["value"] for r in doc["data"]["result"]],
                         [[sample_time(t), "19"], [sample_time(t), "1"]])

    def test_query_special_values(self):
        t = "%.3f" % (LAST_MS / 1000)
        doc = self.ok("/api/v1/query", {"query": "special", "time": t})
        got = {r["metric"]["kind"]: r["value"][1] for r in doc["data"]["result"]}
        self.assertEqual(got, {"huge": "1e+21", "inf": "+Inf", "nan": "NaN", "ninf": "-Inf",
                               "sum": "0.30000000000000004", "tiny": "1e-07"})
        # A raw body check: the value is a JSON string, the time a number with 3 decimals.
        status, _, body = self.get("/api/v1/query", {"query": 'special{kind="tiny"}',
                                                     "time": "1700000000.5"})
        self.assertEqual(status, 200)

    def test_query_scalar_and_string(self):
        doc = self.ok("/api/v1/query", {"query": "1e-7", "time": "1435781451.78"})
        self.assertEqual(doc["data"], {"resultType": "scalar",
                                       "result": [1435781451.78, "0.0000001"]})
        status, _, body = self.get("/api/v1/query", {"query": "2", "time": "1435781451.780"})
        self.assertIn(b'"result":[1435781451.78,"2"]', body)
        doc = self.ok("/api/v1/query", {"query": '"foo"', "time": "100"})
        self.assertEqual(doc["data"], {"resultType": "string", "result": [100, "foo"]})

    def test_query_matrix_and_limit(self):
        t = LAST_MS / 1000
        doc = self.ok("/api/v1/query", {"query": 'up{instance="a:1"}[1m]', "time": "%.3f" % t})
        self.assertEqual(doc["data"]["resultType"], "matrix")
        values = doc["data"]["result"][0]["values"]
        # (t - 1m, t]: the samples at t-45s, t-30s, t-15s, t.
        self.assertEqual(values, [[sample_time(LAST_MS - k * STEP_MS), "%d" % (POINTS - 1 - k)]
                                  for k in (3, 2, 1, 0)])
        doc = self.ok("/api/v1/query", {"query": "many", "time": "%.3f" % t, "limit": "5"})
        self.assertEqual([r["metric"]["i"] for r in doc["data"]["result"]],
                         ["00", "01", "02", "03", "04"])
        self.assertEqual(doc["warnings"], ["results truncated due to limit"])
        doc = self.ok("/api/v1/query", {"query": "nonexistent", "time": "%.3f" % t})
        self.assertEqual(doc["data"], {"resultType": "vector", "result": []})

    def test_query_range(self):
        start, end = BASE_MS / 1000, LAST_MS / 1000
        doc = self.ok("/api/v1/query_range", {"query": 'up{instance="a:1"}',
                                              "start": "%.3f" % start, "end": "%.3f" % end,
                                              "step": "15s"})
        self.assertEqual(doc["data"]["resultType"], "matrix")
        self.assertEqual(doc["data"]["result"], [{
            "metric": {"__name__": "up", "instance": "a:1", "job": "node"},
            "values": [[sample_time(BASE_MS + i * STEP_MS), "%d" % i] for i in range(POINTS)]}])
        # RFC 3339 times and a float step; a scalar query gives a matrix too.
        rfc = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(BASE_MS // 1000)) + ".000Z"
        doc = self.ok("/api/v1/query_range", {"query": "2 * 3", "start": rfc,
                                              "end": "%.3f" % (start + 30), "step": "15"},
                      method="POST")
        self.assertEqual(doc["data"], {"resultType": "matrix", "result": [{
            "metric": {}, "values": [[sample_time(BASE_MS + k * STEP_MS), "6"]
                                     for k in range(3)]}]})
        doc = self.ok("/api/v1/query_range", {"query": "nonexistent", "start": "%.3f" % start,
                                              "end": "%.3f" % end, "step": "15"})
        self.assertEqual(doc["data"], {"resultType": "matrix", "result": []})

    def test_query_errors(self):
        t = "%.3f" % (LAST_MS / 1000)
        self.error("/api/v1/query", {"query": "up{", "time": t}, 400, "bad_data",
                   prefix='invalid parameter "query": 1:')
        self.error("/api/v1/query", {"time": t}, 400, "bad_data",
                   prefix='invalid parameter "query": ')
        # Many-to-many matching is an evaluation error: 422 execution (at a time where both
        # series of up have a value).
        self.error("/api/v1/query", {"query": "up + on() up",
                                     "time": "%.3f" % (LAST_MS / 1000 - 15)}, 422, "execution")
        self.error("/api/v1/query_range", {"query": "up[5m]", "start": "0", "end": "100",
                                           "step": "10"},
                   400, "bad_data", prefix='invalid parameter "query": ')

    def test_query_canceled_when_client_goes_away(self):
        """A client that closes its connection while its query runs gets the query canceled:
        the request ends with 499 (counted in cairn_http_requests_total) instead of running to
        its 200. The query takes seconds: 48 h of 1 ms subquery steps."""
        def count_499():
            return self.proc.metric("cairn_http_requests_total",
                                    {"code": "499", "handler": "/api/v1/query"}) or 0

        before = count_499()
        query = urllib.parse.urlencode({"query": "count_over_time(sum(many)[48h:1ms])",
                                        "time": "%d" % (LAST_MS // 1000)})
        s = socket.create_connection(("127.0.0.1", self.proc.port))
        s.sendall(b"GET /api/v1/query?%s HTTP/1.1\r\nHost: x\r\n\r\n" % query.encode())
        time.sleep(0.3)
        s.close()
        self.proc.wait_metric("cairn_http_requests_total",
                              {"code": "499", "handler": "/api/v1/query"},
                              lambda v: v == before + 1, timeout=30)
        # The daemon serves on.
        self.assertEqual(self.ok("/api/v1/series", {"match[]": "up"})["data"][0]["instance"],
                         "a:1")

    # -- promtool -------------------------------------------------------------------------------

    def promtool(self, *args):
        exe = shutil.which("promtool")
        if not exe:
            if os.environ.get("CAIRN_REQUIRE_PEERS") == "1":
                self.fail("promtool is not installed (Debian package prometheus)")
            self.skipTest("promtool is not installed (Debian package prometheus)")
        return cairn_test.run([exe] + list(args), timeout=30)

    def test_promtool_query_instant(self):
        url = "http://127.0.0.1:%d" % self.proc.port
        res = self.promtool("query", "instant", "--time=%d" % (LAST_MS // 1000), url,
                            'up or http_requests_total')
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertIn('up{instance="a:1", job="node"} => 20 @[%d]' % (LAST_MS // 1000),
                      res.stdout)
        self.assertIn("http_requests_total{", res.stdout)
        self.assertIn("=> 30 @[%d]" % (LAST_MS // 1000), res.stdout)
        res = self.promtool("query", "instant", url, "up{")
        self.assertNotEqual(res.returncode, 0)
        self.assertIn("bad_data", res.stderr + res.stdout)

    def test_promtool_query_range(self):
        url = "http://127.0.0.1:%d" % self.proc.port
        res = self.promtool("query", "range", "--start=%d" % (BASE_MS // 1000),
                            "--end=%d" % (LAST_MS // 1000), "--step=1m", url,
                            'up{instance="a:1"}')
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertIn('up{instance="a:1", job="node"} =>', res.stdout)
        for k in range(0, POINTS, 4):
            self.assertIn("%d @[%d]" % (k, (BASE_MS + k * STEP_MS) // 1000), res.stdout)


class _LimitDaemon(unittest.TestCase):
    """A daemon with extra flags (ARGS) and configuration (CONFIG) on the same data set."""

    ARGS = []
    CONFIG = CONFIG

    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory(prefix="cairn-api-limits-")
        data_dir = os.path.join(cls._tmp.name, "data")
        result = subprocess.run([WRITER, data_dir], input=data_lines(), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        if result.returncode != 0:
            raise AssertionError("api_data_writer failed: %s %s" % (result.stdout, result.stderr))
        cls.proc = CairnProcess(args=cls.ARGS, config_text=cls.CONFIG, tmpdir=cls._tmp.name,
                                data_dir=data_dir)

    @classmethod
    def tearDownClass(cls):
        cls.proc.stop()
        log = cls.proc.log()
        cls._tmp.cleanup()
        marker = cairn_test.crash_report(log)
        if marker:
            raise AssertionError("cairn stderr contains %r:\n%s" % (marker, log[-6000:]))

    def query(self, params):
        status, headers, body = self.proc.request(
            "GET", "/api/v1/query?" + urllib.parse.urlencode(params))
        self.assertEqual(headers.get("Content-Type"), "application/json")
        return status, json.loads(body)


class ApiMaxSamplesTest(_LimitDaemon):
    """--query.max-samples over HTTP: 422 execution with Prometheus's message."""

    ARGS = ["--query.max-samples=100"]

    def test_max_samples(self):
        t = "%.3f" % (LAST_MS / 1000)
        # 15 series, one sample each: within the limit.
        status, doc = self.query({"query": "many", "time": t})
        self.assertEqual(status, 200, doc)
        self.assertEqual(len(doc["data"]["result"]), 15)
        # 15 series x 21 samples in the range: over it.
        status, doc = self.query({"query": "many[10m]", "time": t})
        self.assertEqual(status, 422, doc)
        self.assertEqual(doc["errorType"], "execution")
        self.assertEqual(doc["error"], "query processing would load too many samples into "
                         "memory in query execution")


class ApiTimeoutTest(_LimitDaemon):
    """--query.timeout and the timeout parameter over HTTP: 503 timeout."""

    ARGS = ["--query.timeout=300ms"]
    SLOW = "count_over_time(sum(many)[48h:1ms])"  # seconds of work

    def test_timeout_flag(self):
        started = time.monotonic()
        status, doc = self.query({"query": self.SLOW, "time": "%d" % (LAST_MS // 1000)})
        self.assertEqual(status, 503, doc)
        self.assertEqual(doc["errorType"], "timeout")
        self.assertTrue(doc["error"].startswith("query timed out in "), doc["error"])
        self.assertLess(time.monotonic() - started, 5)


class ApiTimeoutParameterTest(_LimitDaemon):
    """The timeout parameter over HTTP, with the flag's default of 2m: the slow query (seconds
    of work, then over 50M samples) must end with 503 timeout well before either."""

    def test_timeout_parameter(self):
        started = time.monotonic()
        status, doc = self.query({"query": ApiTimeoutTest.SLOW,
                                  "time": "%d" % (LAST_MS // 1000), "timeout": "50ms"})
        self.assertEqual(status, 503, doc)
        self.assertEqual(doc["errorType"], "timeout")
        self.assertLess(time.monotonic() - started, 3)


class ApiSubqueryStepTest(_LimitDaemon):
    """A subquery without a step uses global.evaluation_interval (here 15s; the other daemons
    have the default, 1m), as in Prometheus, also after a reload."""

    ARGS = ["--web.enable-lifecycle"]
    CONFIG = "global:\n  evaluation_interval: 15s\nscrape_configs: []\n"

    def test_default_subquery_step(self):
        t = "%d" % (LAST_MS // 60000 * 60)
        status, doc = self.query({"query": "count_over_time(vector(1)[1m:])", "time": t})
        self.assertEqual(status, 200, doc)
        self.assertEqual(doc["data"]["result"][0]["value"][1], "4")
        self.proc.write_config("global:\n  evaluation_interval: 30s\nscrape_configs: []\n")
        status, _, body = self.proc.request("POST", "/-/reload")
        self.assertEqual(status, 200, body)
        status, doc = self.query({"query": "count_over_time(vector(1)[1m:])", "time": t})
        self.assertEqual(doc["data"]["result"][0]["value"][1], "2")


if __name__ == "__main__":
    cairn_test.main()
