"""Integration tests of the `cairn` daemon: flags, logging, HTTP endpoints, self-metrics,
configuration loading and reloading, and lifecycle (signals, shutdown, data directory lock).

Run by `make check` as `python3 tests/integration/test_daemon.py`; see cairn_test.py for the
environment it needs."""

import gzip
import http.client
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cairn_test  # noqa: E402
from cairn_test import CairnTestCase, free_port, log_records, parse_logfmt  # noqa: E402

GOOD_CONFIG = """\
global:
  scrape_interval: 15s
scrape_configs:
  - job_name: a
    static_configs:
      - targets: ["localhost:1"]
"""

GOOD_CONFIG_2 = """\
global:
  scrape_interval: 30s
  scrape_timeout: 5s
scrape_configs:
  - job_name: a
    static_configs:
      - targets: ["localhost:1"]
  - job_name: b
    metrics_path: /metrics
    static_configs:
      - targets: ["localhost:2", "localhost:3"]
"""

# A typo key on line 3.
BAD_CONFIG_LINE3 = """\
global:
  scrape_interval: 15s
  scrape_intervall: 15s
scrape_configs:
  - job_name: a
    static_configs:
      - targets: ["localhost:1"]
"""
BAD_KEY_LINE3 = "scrape_intervall"

# A typo key on line 5 (inside a scrape config).
BAD_CONFIG_LINE5 = """\
global:
  scrape_interval: 15s
scrape_configs:
  - job_name: a
    scrape_intervall: 10s
    static_configs:
      - targets: ["localhost:1"]
"""
BAD_KEY_LINE5 = "scrape_intervall"

ALL_FLAGS = [
    "--config.file", "--storage.tsdb.path", "--storage.tsdb.retention.time",
    "--storage.tsdb.retention.size", "--storage.tsdb.label-limit",
    "--storage.tsdb.label-name-length-limit", "--storage.tsdb.label-value-length-limit",
    "--web.listen-address", "--web.max-connections",
    "--web.max-request-body-size", "--web.enable-lifecycle", "--log.level",
    "--query.lookback-delta", "--query.timeout", "--query.max-samples",
    "--query.max-concurrency", "--version", "--help",
]

READY_MSG = "Server is ready to receive web requests."
RELOADED_MSG = "Completed loading of configuration file"


def msgs(text):
    return [r.get("msg", "") for r in log_records(text)]


# ---------------------------------------------------------------------------------------------


class FlagTests(CairnTestCase):
    """Command-line parsing; the daemon is run to completion."""

    def safe_args(self):
        # Should a bad flag be accepted by mistake, the daemon must not touch port 9090 or ./data.
        return ["--web.listen-address=127.0.0.1:%d" % free_port(),
                "--storage.tsdb.path=%s" % self.path("data")]

    def test_version(self):
        r = self.run_cairn(["--version"])
        self.assertNoCrash(r)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = (r.stdout + r.stderr).splitlines()
        self.assertTrue(any(l.startswith("cairn, version ") for l in lines),
                        "no line starting 'cairn, version ' in %r" % (r.stdout + r.stderr))

    def test_help_mentions_every_flag(self):
        r = self.run_cairn(["--help"])
        self.assertNoCrash(r)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout + r.stderr
        for flag in ALL_FLAGS:
            with self.subTest(flag=flag):
                # Boolean flags may be shown Prometheus (kingpin) style: --[no-]web.enable-lifecycle.
                self.assertRegex(out, r"--(\[no-\])?" + re.escape(flag[2:]) + r"(?![\w.-])",
                                 "--help does not mention " + flag)

    def test_invalid_flag_values_exit_2(self):
        cases = [
            (["--storage.tsdb.retention.time=15x"], "15x", "--storage.tsdb.retention.time"),
            (["--storage.tsdb.retention.time", "15x"], "15x", "--storage.tsdb.retention.time"),
            (["--storage.tsdb.retention.size=12XB"], "12XB", "--storage.tsdb.retention.size"),
            (["--log.level=verbose"], "verbose", "--log.level"),
            (["--web.max-request-body-size=lots"], "lots", "--web.max-request-body-size"),
            (["--query.lookback-delta=5"], "5", "--query.lookback-delta"),
            (["--storage.tsdb.retention.time=1m1h"], "1m1h", "--storage.tsdb.retention.time"),
            (["--storage.tsdb.retention.time=1h1h"], "1h1h", "--storage.tsdb.retention.time"),
            (["--storage.tsdb.retention.time=-1d"], "-1d", "--storage.tsdb.retention.time"),
            (["--storage.tsdb.retention.time="], "", "--storage.tsdb.retention.time"),
            (["--storage.tsdb.retention.size=-1GB"], "-1GB", "--storage.tsdb.retention.size"),
            (["--storage.tsdb.retention.size=99999999EiB"], "99999999EiB", "--storage.tsdb.retention.size"),
            (["--query.max-samples=abc"], "abc", "--query.max-samples"),
            (["--storage.tsdb.label-limit=-1"], "-1", "--storage.tsdb.label-limit"),
            (["--storage.tsdb.label-limit", "many"], "many", "--storage.tsdb.label-limit"),
            (["--storage.tsdb.label-name-length-limit=1KiB"], "1KiB",
             "--storage.tsdb.label-name-length-limit"),
            (["--storage.tsdb.label-value-length-limit=16k"], "16k",
             "--storage.tsdb.label-value-length-limit"),
            (["--storage.tsdb.label-value-length-limit=99999999999999999999"],
             "99999999999999999999", "--storage.tsdb.label-value-length-limit"),
            (["--web.listen-address=127.0.0.1:99999"], "127.0.0.1:99999", "--web.listen-address"),
        ]
        for args, value, flag in cases:
            with self.subTest(args=args):
                r = self.run_cairn(self.safe_args() + args)
                self.assertNoCrash(r)
                self.assertEqual(r.returncode, 2, "exit code for %r; stderr:\n%s" % (args, r.stderr))
                self.assertIn('invalid value "%s" for flag %s' % (value, flag), r.stderr)

    def test_invalid_listen_address_exits_2(self):
        # Given last, so it overrides the safe address.
        r = self.run_cairn(self.safe_args() + ["--web.listen-address=nonsense"])
        self.assertNoCrash(r)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn('invalid value "nonsense" for flag --web.listen-address', r.stderr)

    def test_unknown_flag_exits_2(self):
        r = self.run_cairn(self.safe_args() + ["--nope"])
        self.assertNoCrash(r)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--nope", r.stderr)

    def test_missing_flag_value_exits_2(self):
        r = self.run_cairn(self.safe_args() + ["--log.level"])
        self.assertNoCrash(r)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--log.level", r.stderr)

    def test_valid_flag_values_are_accepted(self):
        p = self.start([
            "--storage.tsdb.retention.time=1h30m",
            "--storage.tsdb.retention.size", "1GiB",
            "--web.max-connections=64",
            "--web.max-request-body-size=512MB",
            "--log.level", "warn",
            "--query.lookback-delta=5m",
            "--query.timeout", "2m",
            "--query.max-samples=50000000",
            "--query.max-concurrency=4",
        ])
        self.assertEqual(p.get("/-/healthy")[0], 200)
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait_exit(10), 0, p.log())
        self.assertNotRegex(p.log(), r"(?m)level=info ", "--log.level warn still logs info lines")

    def test_more_valid_values(self):
        for args in (["--storage.tsdb.retention.time=2w1d12h", "--storage.tsdb.retention.size=1.5GB"],
                     ["--storage.tsdb.retention.time=0", "--storage.tsdb.retention.size=0"],
                     ["--storage.tsdb.retention.time", "1y", "--storage.tsdb.retention.size", "512MB"],
                     ["--query.timeout=500ms", "--query.lookback-delta=1m30s"]):
            with self.subTest(args=args):
                p = self.start(args, data_dir=self.path("data-%d" % len(args)))
                self.assertEqual(p.get("/-/healthy")[0], 200)
                p.send_signal(signal.SIGTERM)
                self.assertEqual(p.wait_exit(10), 0, p.log())

    def test_label_limit_flags(self):
        # The daemon does not ingest yet, so the limits are seen in the start-up flag log
        # (debug level): defaults, then given values (0 = no limit).
        for args, want in (
                ([], {"storage.tsdb.label-limit": "64",
                      "storage.tsdb.label-name-length-limit": "1024",
                      "storage.tsdb.label-value-length-limit": "16384"}),
                (["--storage.tsdb.label-limit=0", "--storage.tsdb.label-name-length-limit", "200",
                  "--storage.tsdb.label-value-length-limit=100000"],
                 {"storage.tsdb.label-limit": "0",
                  "storage.tsdb.label-name-length-limit": "200",
                  "storage.tsdb.label-value-length-limit": "100000"})):
            with self.subTest(args=args):
                p = self.start(["--log.level=debug"] + args,
                               data_dir=self.path("data-limits-%d" % len(args)))
                self.assertEqual(p.get("/-/healthy")[0], 200)
                p.send_signal(signal.SIGTERM)
                self.assertEqual(p.wait_exit(10), 0, p.log())
                flags = {r.get("name"): r.get("value")
                         for r in log_records(p.log()) if r.get("msg") == "Flag"}
                for name, value in want.items():
                    self.assertEqual(flags.get(name), value, "flag %s in log:\n%s" % (name, p.log()))

    def test_bad_config_file_exits_1(self):
        path = self.write("bad.yml", BAD_CONFIG_LINE3)
        r = self.run_cairn(self.safe_args() + ["--config.file=%s" % path])
        self.assertNoCrash(r)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("%s:3:" % path, r.stderr)
        self.assertIn(BAD_KEY_LINE3, r.stderr)

    def test_missing_config_file_exits_1(self):
        path = self.path("does-not-exist.yml")
        r = self.run_cairn(self.safe_args() + ["--config.file", path])
        self.assertNoCrash(r)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(path, r.stderr)

    def test_no_web_enable_lifecycle_turns_it_off(self):
        p = self.start(["--web.enable-lifecycle", "--no-web.enable-lifecycle"])
        status, _, body = p.post("/-/reload")
        self.assertEqual(status, 403, body)


# ---------------------------------------------------------------------------------------------


class LoggingTests(CairnTestCase):

    def test_every_line_is_logfmt_and_ready_is_logged(self):
        p = self.start(config_text=GOOD_CONFIG)
        p.wait_log(r'msg="%s"' % re.escape(READY_MSG), timeout=5)
        self.assertEqual(p.get("/metrics")[0], 200)
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait_exit(10), 0, p.log())
        log = p.log()
        self.assertTrue(log.strip(), "no log output at all")
        self.assertTrue(log.endswith("\n"), "last log line is not terminated")
        problems = cairn_test.check_log_lines(log)
        self.assertEqual(problems, [], "\n".join(problems) + "\n--- stderr:\n" + log)
        self.assertIn(READY_MSG, msgs(log))

    def test_debug_level(self):
        p = self.start(["--log.level=debug"])
        p.get("/metrics")
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait_exit(10), 0, p.log())
        log = p.log()
        self.assertRegex(log, r"(?m)^ts=\S+ level=debug ", "no level=debug line:\n" + log)
        self.assertEqual(cairn_test.check_log_lines(log), [])

    def test_values_are_escaped(self):
        d = self.path('we"ird dir=x')
        os.mkdir(d)
        cfg = os.path.join(d, "cairn.yml")
        p = self.start(["--web.enable-lifecycle"], config_text=GOOD_CONFIG, config_name='we"ird dir=x/cairn.yml')
        self.assertEqual(p.config_path, cfg)
        p.write_config(BAD_CONFIG_LINE3)
        status, _, body = p.post("/-/reload")
        self.assertEqual(status, 500, body)
        self.assertIn("%s:3:" % cfg, body.decode("utf-8", "replace"))
        p.wait_log(r"level=error ", timeout=5)
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait_exit(10), 0, p.log())
        log = p.log()
        self.assertEqual(cairn_test.check_log_lines(log), [], log)
        recs = log_records(log)
        self.assertTrue(any(v == cfg for r in recs for k, v in r.items() if k != "_raw"),
                        "no log value is exactly the config path %r:\n%s" % (cfg, log))
        errs = [r for r in recs if r.get("level") == "error"]
        self.assertTrue(any("%s:3:" % cfg in v for r in errs for k, v in r.items() if k != "_raw"),
                        "no error value holds %r:\n%s" % ("%s:3:" % cfg, log))

    def test_error_level_hides_info(self):
        p = self.start(["--log.level=error"])
        p.get("/metrics")
        p.get("/nonexistent")
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait_exit(10), 0, p.log())
        log = p.log()
        self.assertNotRegex(log, r"level=(info|debug|warn) ", "--log.level=error logs lower levels:\n" + log)
        self.assertEqual(cairn_test.check_log_lines(log), [])


# ---------------------------------------------------------------------------------------------


class HttpTests(CairnTestCase):

    def test_healthy_and_ready(self):
        p = self.start()
        status, headers, body = p.get("/-/healthy")
        self.assertEqual(status, 200)
        self.assertIn(b"Healthy", body)
        status, headers, body = p.head("/-/healthy")
        self.assertEqual(status, 200)
        self.assertEqual(body, b"", "HEAD response carries a body")
        status, headers, body = p.get("/-/ready")
        self.assertEqual(status, 200)

    def test_api_not_found_is_json(self):
        p = self.start()
        status, headers, body = p.get("/api/v1/nonexistent")
        self.assertEqual(status, 404, body)
        self.assertTrue((headers.get("Content-Type") or "").startswith("application/json"),
                        "Content-Type %r" % headers.get("Content-Type"))
        doc = json.loads(body)
        self.assertEqual(doc.get("status"), "error", doc)
        self.assertEqual(doc.get("errorType"), "not_found", doc)
        self.assertIsInstance(doc.get("error"), str, doc)
        self.assertIn("/api/v1/nonexistent", doc["error"])

    def test_unknown_path_404(self):
        p = self.start()
        for path in ("/nonexistent", "/-/nonexistent", "/metrics/extra"):
            with self.subTest(path=path):
                self.assertEqual(p.get(path)[0], 404)

    def test_lifecycle_disabled(self):
        p = self.start(config_text=GOOD_CONFIG)
        status, _, body = p.post("/-/reload")
        self.assertEqual(status, 403)
        self.assertEqual(body.strip(), b"Lifecycle API is not enabled.")
        status, _, body = p.post("/-/quit")
        self.assertEqual(status, 403)
        self.assertEqual(body.strip(), b"Lifecycle API is not enabled.")
        time.sleep(0.2)
        self.assertTrue(p.running(), "daemon exited after a refused /-/quit")

    def test_reload_wrong_method_405(self):
        p = self.start(["--web.enable-lifecycle"], config_text=GOOD_CONFIG)
        status, _, body = p.get("/-/reload")
        self.assertEqual(status, 405, body)
        self.assertTrue(p.running())

    def _assert_still_up(self, p):
        self.assertTrue(p.running(), "daemon died:\n" + p.log()[-3000:])
        self.assertEqual(p.get("/-/healthy")[0], 200)

    def test_body_size_limit_content_length(self):
        p = self.start(["--web.enable-lifecycle", "--web.max-request-body-size=1KB"],
                       config_text=GOOD_CONFIG)
        # Under the limit: accepted (the reload ignores the body).
        status, _, body = p.post("/-/reload", body=b"x" * 100)
        self.assertEqual(status, 200, body)
        # Over the limit.
        try:
            status, _, body = p.post("/-/reload", body=b"x" * 4096,
                                     headers={"Content-Type": "application/octet-stream"})
        except (ConnectionResetError, BrokenPipeError, http.client.HTTPException) as e:
            self.fail("no response to an oversized body (Content-Length): %r" % e)
        self.assertEqual(status, 413, body)
        self._assert_still_up(p)

    def test_body_size_limit_chunked(self):
        p = self.start(["--web.enable-lifecycle", "--web.max-request-body-size=1KB"],
                       config_text=GOOD_CONFIG)
        conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=10)
        try:
            conn.putrequest("POST", "/-/reload")
            conn.putheader("Transfer-Encoding", "chunked")
            conn.putheader("Content-Type", "application/octet-stream")
            conn.endheaders()
            chunked = b"".join(b"400\r\n" + b"y" * 1024 + b"\r\n" for _ in range(4)) + b"0\r\n\r\n"
            try:
                conn.send(chunked)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the daemon may answer and close before reading everything
            try:
                resp = conn.getresponse()
                body = resp.read()
            except (ConnectionResetError, http.client.HTTPException) as e:
                self.fail("no response to an oversized chunked body: %r" % e)
            self.assertEqual(resp.status, 413, body)
        finally:
            conn.close()
        self._assert_still_up(p)

    def _raw(self, port, data, timeout=2.0):
        """Sends raw bytes, half-closes, and returns (bytes received, how it ended)."""
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        out = b""
        try:
            try:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
            except OSError as e:
                return out, repr(e)
            while True:
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    return out, "timeout"
                except OSError as e:
                    return out, repr(e)
                if not chunk:
                    return out, "eof"
                out += chunk
        finally:
            s.close()

    def test_body_size_limit_boundary(self):
        # Sizes are powers of 1024: 1KB is 1024 bytes.
        p = self.start(["--web.enable-lifecycle", "--web.max-request-body-size=1KB"],
                       config_text=GOOD_CONFIG)
        head = b"POST /-/reload HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        cases = [
            ("content-length 1024", head + b"Content-Length: 1024\r\n\r\n" + b"x" * 1024, 200),
            ("content-length 1025", head + b"Content-Length: 1025\r\n\r\n" + b"x" * 1025, 413),
            ("chunked 1024", head + b"Transfer-Encoding: chunked\r\n\r\n400\r\n" + b"x" * 1024
             + b"\r\n0\r\n\r\n", 200),
            ("chunked 1025", head + b"Transfer-Encoding: chunked\r\n\r\n400\r\n" + b"x" * 1024
             + b"\r\n1\r\nx\r\n0\r\n\r\n", 413),
        ]
        for name, data, want in cases:
            with self.subTest(case=name):
                out, how = self._raw(p.port, data, timeout=5)
                m = re.match(rb"HTTP/1\.[01] (\d{3}) ", out)
                self.assertIsNotNone(m, "no response (%s): %r" % (how, out[:200]))
                self.assertEqual(int(m.group(1)), want, out[:300])
        self._assert_still_up(p)

    def test_malformed_requests(self):
        p = self.start(["--web.enable-lifecycle", "--web.max-request-body-size=1KB"],
                       config_text=GOOD_CONFIG)
        cases = {
            "garbage": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n",
            "no version": b"GET\r\n\r\n",
            "bad version": b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
            "huge url": b"GET /" + b"a" * 200000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            "huge header": b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 200000 + b"\r\n\r\n",
            "many headers": b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 20000 + b"\r\n",
            "bad content-length": b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
            "negative content-length": b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
            "huge content-length": b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "bad chunk": b"POST /-/reload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
            "huge chunk": b"POST /-/reload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nabc\r\n",
            "nul in path": b"GET /-/heal\x00thy HTTP/1.1\r\nHost: x\r\n\r\n",
            "percent garbage": b"GET /%zz%00%ff HTTP/1.1\r\nHost: x\r\n\r\n",
        }
        for name, data in cases.items():
            with self.subTest(case=name):
                out, how = self._raw(p.port, data, timeout=1.0)
                if out:
                    self.assertRegex(out[:64], rb"^HTTP/1\.[01] [2-5]\d\d ", "%s: %r" % (how, out[:200]))
                    if name not in ("nul in path", "percent garbage"):
                        self.assertRegex(out[:64], rb"^HTTP/1\.[01] [45]\d\d ", "accepted: %r" % out[:200])
                self.assertTrue(p.running(), "daemon died on %s:\n%s" % (name, p.log()[-3000:]))
        self._assert_still_up(p)
        p.metrics()

    def test_query_string_and_methods(self):
        p = self.start()
        self.assertEqual(p.get("/metrics?x=1&y=%20")[0], 200)
        self.assertEqual(p.get("/-/healthy?probe=1")[0], 200)
        status, headers, body = p.head("/metrics")
        self.assertEqual(status, 200)
        status, headers, body = p.post("/metrics", body=b"")
        self.assertEqual(status, 405, body)

    def test_max_connections_smoke(self):
        p = self.start(["--web.max-connections=4"])
        socks = []
        try:
            for _ in range(12):
                try:
                    socks.append(socket.create_connection(("127.0.0.1", p.port), timeout=2))
                except OSError:
                    pass
            time.sleep(0.3)
            self.assertTrue(p.running())
        finally:
            for s in socks:
                s.close()
        deadline = time.monotonic() + 5
        status = None
        while time.monotonic() < deadline:
            try:
                status = p.get("/-/healthy")[0]
                if status == 200:
                    break
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.1)
        self.assertEqual(status, 200, "no service after the extra connections closed")

    def test_concurrent_keepalive_requests(self):
        p = self.start()
        threads, per_thread = 8, 200
        errors = []
        ok_counts = [0] * threads

        def worker(idx):
            conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=10)
            # Odd threads ask for gzip; every 10th body is parsed and validated (histogram
            # buckets must stay consistent while other threads update them).
            headers = {"Accept-Encoding": "gzip"} if idx % 2 else {}
            try:
                for i in range(per_thread):
                    conn.request("GET", "/metrics", headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    if resp.status != 200 or not data:
                        errors.append("status %d, %d bytes" % (resp.status, len(data)))
                        return
                    if i % 10 == 0:
                        if (resp.getheader("Content-Encoding") or "").lower() == "gzip":
                            data = gzip.decompress(data)
                        try:
                            cairn_test.parse_text_format(data.decode("utf-8"))
                        except ValueError as e:
                            errors.append("bad exposition under load: %s" % e)
                            return
                    ok_counts[idx] += 1
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))
            finally:
                conn.close()

        ts = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
        for t in ts:
            t.start()
        deadline = time.monotonic() + 40
        for t in ts:
            t.join(max(0.1, deadline - time.monotonic()))
        self.assertFalse(any(t.is_alive() for t in ts), "requests still running after 40 s")
        self.assertEqual(errors, [])
        self.assertEqual(sum(ok_counts), threads * per_thread)
        n = p.metric("cairn_http_requests_total", {"code": "200", "handler": "/metrics"})
        self.assertIsNotNone(n)
        self.assertGreaterEqual(n, threads * per_thread)
        self._assert_still_up(p)


# ---------------------------------------------------------------------------------------------


def _proc_fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def _proc_max_fds(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                return float(line.split()[3])
    return None


def _proc_statm(pid):
    with open("/proc/%d/statm" % pid) as f:
        size, resident = f.read().split()[:2]
    page = os.sysconf("SC_PAGE_SIZE")
    return int(size) * page, int(resident) * page


def _close_wait_sockets(port):
    """Number of TCP sockets with local port `port` in state CLOSE_WAIT (Linux /proc)."""
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "08":
                        n += 1
        except OSError:
            pass
    return n


class MetricsTests(CairnTestCase):

    def setUp(self):
        super().setUp()
        self.p = self.start(config_text=GOOD_CONFIG)

    def test_content_type_and_format(self):
        status, headers, body = self.p.get("/metrics")
        self.assertEqual(status, 200)
        self.assertTrue((headers.get("Content-Type") or "").startswith("text/plain; version=0.0.4"),
                        "Content-Type %r" % headers.get("Content-Type"))
        fams = cairn_test.parse_text_format(body.decode("utf-8"))
        self.assertGreater(len(fams), 5)

    def test_gzip_when_asked(self):
        status, headers, body = self.p.get("/metrics", headers={"Accept-Encoding": "gzip"})
        self.assertEqual(status, 200)
        if (headers.get("Content-Encoding") or "").lower() == "gzip":
            body = gzip.decompress(body)
        fams = cairn_test.parse_text_format(body.decode("utf-8"))
        self.assertIn("cairn_build_info", fams)

    def test_build_info(self):
        fams = self.p.metrics()
        self.assertIn("cairn_build_info", fams)
        self.assertEqual(fams["cairn_build_info"].type, "gauge")
        samples = fams["cairn_build_info"].samples
        self.assertEqual(len(samples), 1, samples)
        _, labels, value = samples[0]
        self.assertEqual(value, 1)
        self.assertTrue(labels.get("version"), labels)
        self.assertTrue(labels.get("revision"), labels)
        r = self.run_cairn(["--version"])
        self.assertIn(labels["version"], r.stdout + r.stderr, "build_info version differs from --version")

    def test_process_metrics(self):
        pid = self.p.pid
        fams = self.p.metrics()
        expect = {
            "process_cpu_seconds_total": "counter",
            "process_resident_memory_bytes": "gauge",
            "process_virtual_memory_bytes": "gauge",
            "process_open_fds": "gauge",
            "process_max_fds": "gauge",
            "process_start_time_seconds": "gauge",
        }
        for name, typ in expect.items():
            with self.subTest(metric=name):
                self.assertIn(name, fams)
                self.assertEqual(fams[name].type, typ)
                self.assertIsNotNone(fams.value(name))
        self.assertGreaterEqual(fams.value("process_cpu_seconds_total"), 0)
        vsize, rss = _proc_statm(pid)
        got_rss = fams.value("process_resident_memory_bytes")
        self.assertGreater(got_rss, 0)
        self.assertTrue(rss / 2 <= got_rss <= rss * 2, "rss %d, /proc says %d" % (got_rss, rss))
        got_vsize = fams.value("process_virtual_memory_bytes")
        self.assertTrue(vsize / 2 <= got_vsize <= vsize * 2, "vsize %d, /proc says %d" % (got_vsize, vsize))
        open_fds = fams.value("process_open_fds")
        self.assertGreater(open_fds, 0)
        self.assertLessEqual(abs(open_fds - _proc_fd_count(pid)), 10,
                             "open fds %d, /proc says %d" % (open_fds, _proc_fd_count(pid)))
        self.assertEqual(fams.value("process_max_fds"), _proc_max_fds(pid))
        start = fams.value("process_start_time_seconds")
        self.assertGreaterEqual(start, self.p.spawn_time - 2, "start time before the spawn")
        self.assertLessEqual(start, time.time() + 1, "start time in the future")

    def test_http_request_counter_and_histogram(self):
        self.p.get("/metrics")
        fams = self.p.metrics()
        labels = {"code": "200", "handler": "/metrics"}
        first = fams.value("cairn_http_requests_total", labels)
        self.assertIsNotNone(first, "no cairn_http_requests_total%r after a first request" % labels)
        self.assertGreaterEqual(first, 1)
        self.assertEqual(fams["cairn_http_requests_total"].type, "counter")
        fam = fams.get("cairn_http_request_duration_seconds")
        self.assertIsNotNone(fam, "no cairn_http_request_duration_seconds family")
        self.assertEqual(fam.type, "histogram")
        inf = fams.value("cairn_http_request_duration_seconds_bucket", {"handler": "/metrics", "le": "+Inf"})
        count = fams.value("cairn_http_request_duration_seconds_count", {"handler": "/metrics"})
        total = fams.value("cairn_http_request_duration_seconds_sum", {"handler": "/metrics"})
        self.assertIsNotNone(inf)
        self.assertIsNotNone(count)
        self.assertIsNotNone(total)
        self.assertGreaterEqual(count, 1)
        self.assertEqual(inf, count)
        self.assertGreaterEqual(total, 0)
        for _ in range(3):
            self.p.get("/metrics")
        fams2 = self.p.metrics()
        second = fams2.value("cairn_http_requests_total", labels)
        self.assertGreaterEqual(second, first + 3, "counter did not increase across requests")
        count2 = fams2.value("cairn_http_request_duration_seconds_count", {"handler": "/metrics"})
        self.assertGreaterEqual(count2, count + 3)

    def test_jemalloc_metrics(self):
        if cairn_test.SANITIZERS:
            self.skipTest("sanitizer build: no jemalloc")
        fams = self.p.metrics()
        names = ["cairn_jemalloc_allocated_bytes", "cairn_jemalloc_active_bytes",
                 "cairn_jemalloc_resident_bytes", "cairn_jemalloc_mapped_bytes"]
        values = {}
        for name in names:
            with self.subTest(metric=name):
                self.assertIn(name, fams)
                values[name] = fams.value(name)
                self.assertIsNotNone(values[name])
                self.assertGreater(values[name], 0)
        if len(values) == 4 and all(v is not None for v in values.values()):
            # jemalloc's documented invariants.
            self.assertLessEqual(values["cairn_jemalloc_allocated_bytes"], values["cairn_jemalloc_active_bytes"])
            self.assertLessEqual(values["cairn_jemalloc_active_bytes"], values["cairn_jemalloc_resident_bytes"])
            self.assertLessEqual(values["cairn_jemalloc_active_bytes"], values["cairn_jemalloc_mapped_bytes"])

    def test_config_reload_successful_metric(self):
        fams = self.p.metrics()
        self.assertEqual(fams.value("cairn_config_last_reload_successful"), 1)
        self.assertEqual(fams["cairn_config_last_reload_successful"].type, "gauge")


# ---------------------------------------------------------------------------------------------


class ConfigReloadTests(CairnTestCase):

    def test_reload_valid_config(self):
        p = self.start(["--web.enable-lifecycle"], config_text=GOOD_CONFIG)
        p.wait_log(re.escape(RELOADED_MSG), timeout=5)
        mark = p.log_mark()
        p.write_config(GOOD_CONFIG_2)
        status, _, body = p.post("/-/reload")
        self.assertEqual(status, 200, body)
        p.wait_log(r'msg="%s' % re.escape(RELOADED_MSG), timeout=5, since=mark)
        self.assertEqual(p.metric("cairn_config_last_reload_successful"), 1)

    def test_reload_invalid_config_then_sighup(self):
        p = self.start(["--web.enable-lifecycle"], config_text=GOOD_CONFIG)
        self.assertEqual(p.metric("cairn_config_last_reload_successful"), 1)
        mark = p.log_mark()
        p.write_config(BAD_CONFIG_LINE5)
        status, _, body = p.post("/-/reload")
        self.assertEqual(status, 500, body)
        where = "%s:5:" % p.config_path
        self.assertIn(where, body.decode("utf-8", "replace"))
        self.assertIn(BAD_KEY_LINE5, body.decode("utf-8", "replace"))
        p.wait_log(r"level=error .*" + re.escape(where), timeout=5, since=mark)
        self.assertEqual(p.metric("cairn_config_last_reload_successful"), 0)
        self.assertTrue(p.running())
        self.assertEqual(p.get("/-/healthy")[0], 200)
        # Fix the file and reload with SIGHUP.
        mark = p.log_mark()
        p.write_config(GOOD_CONFIG_2)
        p.send_signal(signal.SIGHUP)
        p.wait_log(r'msg="%s' % re.escape(RELOADED_MSG), timeout=5, since=mark)
        p.wait_metric("cairn_config_last_reload_successful", None, lambda v: v == 1, timeout=5)
        self.assertTrue(p.running())

    def test_sighup_with_invalid_config_keeps_running(self):
        p = self.start(config_text=GOOD_CONFIG)
        mark = p.log_mark()
        p.write_config(BAD_CONFIG_LINE3)
        p.send_signal(signal.SIGHUP)
        p.wait_log(r"level=error .*" + re.escape("%s:3:" % p.config_path), timeout=5, since=mark)
        p.wait_metric("cairn_config_last_reload_successful", None, lambda v: v == 0, timeout=5)
        self.assertTrue(p.running())
        self.assertEqual(p.get("/-/healthy")[0], 200)

    def test_reloads_under_load(self):
        p = self.start(["--web.enable-lifecycle"], config_text=GOOD_CONFIG)
        stop = threading.Event()
        errors = []
        count = [0]

        def scraper():
            conn = http.client.HTTPConnection("127.0.0.1", p.port, timeout=10)
            try:
                while not stop.is_set():
                    conn.request("GET", "/metrics")
                    resp = conn.getresponse()
                    data = resp.read()
                    if resp.status != 200:
                        errors.append("GET /metrics %d" % resp.status)
                        return
                    cairn_test.parse_text_format(data.decode("utf-8"))
                    count[0] += 1
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
            finally:
                conn.close()

        ts = [threading.Thread(target=scraper, daemon=True) for _ in range(3)]
        for t in ts:
            t.start()
        try:
            for i in range(30):
                p.write_config(GOOD_CONFIG if i % 2 else GOOD_CONFIG_2)
                if i % 3 == 0:
                    p.send_signal(signal.SIGHUP)
                else:
                    status, _, body = p.post("/-/reload")
                    self.assertEqual(status, 200, body)
                time.sleep(0.02)
        finally:
            stop.set()
            for t in ts:
                t.join(15)
        self.assertEqual(errors, [])
        self.assertGreater(count[0], 0)
        self.assertTrue(p.running(), p.log()[-3000:])
        p.write_config(GOOD_CONFIG)
        self.assertEqual(p.post("/-/reload")[0], 200)
        self.assertEqual(p.metric("cairn_config_last_reload_successful"), 1)

    def test_default_config(self):
        p = self.start()
        p.wait_log(re.escape(READY_MSG), timeout=5)
        recs = log_records(p.log())
        mentions = [r["_raw"] for r in recs
                    if "default" in r.get("msg", "").lower() or "default" in r.get("filename", "").lower()]
        self.assertTrue(mentions, "no log line mentions the default configuration:\n" + p.log())
        self.assertEqual(p.metric("cairn_config_last_reload_successful"), 1)

    def test_reload_deleted_config_file(self):
        p = self.start(["--web.enable-lifecycle"], config_text=GOOD_CONFIG)
        os.unlink(p.config_path)
        status, _, body = p.post("/-/reload")
        self.assertEqual(status, 500, body)
        self.assertIn(p.config_path, body.decode("utf-8", "replace"))
        self.assertEqual(p.metric("cairn_config_last_reload_successful"), 0)
        self.assertTrue(p.running())


# ---------------------------------------------------------------------------------------------


class LifecycleTests(CairnTestCase):

    def _graceful(self, sig):
        p = self.start(config_text=GOOD_CONFIG)
        p.send_signal(sig)
        self.assertEqual(p.wait_exit(10), 0, p.log())
        found = [m for m in msgs(p.log()) if "gracefully" in m or "See you next time" in m]
        self.assertTrue(found, "no shutdown message in:\n" + p.log())
        self.assertEqual(cairn_test.check_log_lines(p.log()), [])

    def test_sigterm(self):
        self._graceful(signal.SIGTERM)

    def test_sigint(self):
        self._graceful(signal.SIGINT)

    def test_in_flight_request_survives_sigterm(self):
        p = self.start(["--web.enable-lifecycle"], config_text=GOOD_CONFIG)
        s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        try:
            s.sendall(b"POST /-/reload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      b"Content-Type: text/plain\r\nContent-Length: 10\r\n\r\n01234")
            time.sleep(0.3)
            p.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            send_error = None
            try:
                s.sendall(b"56789")
            except OSError as e:
                send_error = e
            data = b""
            outcome = None
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                s.settimeout(max(0.1, deadline - time.monotonic()))
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    outcome = "timeout"
                    break
                except ConnectionResetError:
                    outcome = "reset"
                    break
                if not chunk:
                    outcome = "eof"
                    break
                data += chunk
                if b"\r\n\r\n" in data:
                    outcome = "response"
                    break
            if data:
                self.assertTrue(data.startswith(b"HTTP/1."), "garbage response %r" % data[:200])
            else:
                self.assertEqual(outcome, "eof",
                                 "no response and no clean close (%s, send error %r)" % (outcome, send_error))
        finally:
            s.close()
        self.assertEqual(p.wait_exit(10), 0, p.log())

    def test_idle_connections_do_not_block_shutdown(self):
        p = self.start()
        conns = []
        try:
            for _ in range(5):
                c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=5)
                c.request("GET", "/-/healthy")
                c.getresponse().read()
                conns.append(c)  # kept open, idle, keep-alive
            stalled = socket.create_connection(("127.0.0.1", p.port), timeout=5)
            stalled.sendall(b"GET /metr")  # a request line that never completes
            t0 = time.monotonic()
            p.send_signal(signal.SIGTERM)
            self.assertEqual(p.wait_exit(10), 0, p.log())
            self.assertLess(time.monotonic() - t0, 10)
            stalled.close()
        finally:
            for c in conns:
                c.close()

    def test_stalled_request_body_does_not_block_shutdown(self):
        # A client sends headers and part of the body, then stops sending (but keeps the
        # connection open). SIGTERM must still end the process within 10 s.
        p = self.start(["--web.enable-lifecycle"], config_text=GOOD_CONFIG)
        s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        try:
            s.sendall(b"POST /-/reload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\nabc")
            time.sleep(0.3)
            t0 = time.monotonic()
            p.send_signal(signal.SIGTERM)
            code = p.wait_exit(10)
            self.assertEqual(code, 0, p.log())
            self.assertLess(time.monotonic() - t0, 10)
        finally:
            s.close()

    def test_client_closing_mid_body_is_noticed(self):
        # Clients that give up in the middle of a request body (half-close, then close) must
        # not leave connections behind: no server socket may stay in CLOSE_WAIT, and a
        # following SIGTERM must not wait for them.
        p = self.start(["--web.enable-lifecycle"], config_text=GOOD_CONFIG)
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
            try:
                s.sendall(b"POST /-/reload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\nabc")
                s.shutdown(socket.SHUT_WR)
                s.settimeout(0.2)
                try:
                    s.recv(4096)
                except OSError:
                    pass
            finally:
                s.close()
        deadline = time.monotonic() + 5
        while True:
            lingering = _close_wait_sockets(p.port)
            if lingering == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(lingering, 0, "%d server connections stuck in CLOSE_WAIT 5 s after the "
                                       "clients closed them" % lingering)
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait_exit(10), 0, p.log())
        self.assertLess(time.monotonic() - t0, 5, "shutdown waited for connections the clients had closed")

    def test_second_sigterm_still_clean(self):
        p = self.start(config_text=GOOD_CONFIG)
        p.send_signal(signal.SIGTERM)
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait_exit(10), 0, p.log())

    def test_sighup_with_default_config(self):
        p = self.start()
        mark = p.log_mark()
        p.send_signal(signal.SIGHUP)
        p.wait_log(re.escape(RELOADED_MSG), timeout=5, since=mark)
        self.assertTrue(p.running())
        self.assertEqual(p.metric("cairn_config_last_reload_successful"), 1)

    def test_clients_vanishing_mid_response(self):
        # Clients that reset the connection right after sending a request must not kill the
        # daemon (SIGPIPE/EPIPE on write).
        p = self.start()
        for _ in range(100):
            s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()  # RST
        time.sleep(0.3)
        self.assertTrue(p.running(), "daemon died:\n" + p.log()[-3000:])
        self.assertEqual(p.get("/-/healthy")[0], 200)
        p.metrics()

    def test_creates_data_directory(self):
        data = self.path("nested", "deeper", "data")
        p = self.start(data_dir=data)
        self.assertTrue(os.path.isdir(data), "data directory %s not created" % data)
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait_exit(10), 0, p.log())

    def test_default_data_directory(self):
        p = self.start(data_dir=False)
        self.assertTrue(os.path.isdir(self.path("data")), "default data/ not created in the cwd")

    def test_data_directory_lock(self):
        first = self.start()
        r = self.run_cairn(["--web.listen-address=127.0.0.1:%d" % free_port(),
                            "--storage.tsdb.path=%s" % first.data_dir])
        self.assertNoCrash(r)
        self.assertNotEqual(r.returncode, 0, "second daemon on the same data directory started")
        self.assertIn("lock", r.stderr.lower())
        self.assertTrue(first.running())
        self.assertEqual(first.get("/-/healthy")[0], 200)
        # The lock is released on a clean shutdown.
        first.send_signal(signal.SIGTERM)
        self.assertEqual(first.wait_exit(10), 0, first.log())
        again = self.start(data_dir=first.data_dir)
        self.assertEqual(again.get("/-/healthy")[0], 200)

    def test_lock_released_after_kill(self):
        # The data directory lock must not outlive a crashed (SIGKILLed) daemon.
        first = self.start()
        first.send_signal(signal.SIGKILL)
        self.assertEqual(first.wait_exit(10), -signal.SIGKILL)
        again = self.start(data_dir=first.data_dir)
        self.assertEqual(again.get("/-/healthy")[0], 200)

    def test_data_path_is_a_file(self):
        path = self.write("not-a-dir", "x")
        r = self.run_cairn(["--web.listen-address=127.0.0.1:%d" % free_port(),
                            "--storage.tsdb.path=%s" % path])
        self.assertNoCrash(r)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(path, r.stderr)

    def test_quit(self):
        p = self.start(["--web.enable-lifecycle"], config_text=GOOD_CONFIG)
        status, _, body = p.post("/-/quit")
        self.assertEqual(status, 200, body)
        self.assertEqual(p.wait_exit(10), 0, p.log())

    def test_listen_address_in_use(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen(1)
            port = s.getsockname()[1]
            r = self.run_cairn(["--web.listen-address=127.0.0.1:%d" % port,
                                "--storage.tsdb.path=%s" % self.path("data")])
        self.assertNoCrash(r)
        self.assertNotEqual(r.returncode, 0, "started on a port that is in use")


if __name__ == "__main__":
    cairn_test.main()
