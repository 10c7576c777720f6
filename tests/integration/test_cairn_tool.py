"""Integration tests of `cairn-tool`: usage, --version, and `check config`, whose messages must
match the daemon's for the same file.

Run by `make check` as `python3 tests/integration/test_cairn_tool.py`; see cairn_test.py for
the environment it needs."""

import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cairn_test  # noqa: E402
from cairn_test import CairnTestCase, free_port, parse_logfmt  # noqa: E402

GOOD = """\
global:
  scrape_interval: 15s
  evaluation_interval: 30s
  external_labels:
    region: eu
scrape_configs:
  - job_name: a
    static_configs:
      - targets: ["localhost:1"]
  - job_name: b
    scrape_interval: 5s
    metrics_path: /probe
    static_configs:
      - targets: ["localhost:2"]
        labels:
          team: x
"""

EMPTY = ""

GOOD_MINIMAL = """\
global:
  scrape_interval: 15s
scrape_configs:
  - job_name: a
    static_configs:
      - targets: ["localhost:1"]
"""

# Keys Prometheus knows but Cairn does not implement are accepted with a warning.
GOOD_WITH_UNIMPLEMENTED = """\
global:
  scrape_interval: 15s
rule_files: []
scrape_configs:
  - job_name: a
    static_configs:
      - targets: ["localhost:1"]
"""

# (name, text, line, column (None: any), text the message must contain)
BAD = [
    ("typo_key_global", """\
global:
  scrape_interval: 15s
  evaluation_intervall: 1m
scrape_configs:
  - job_name: a
    static_configs:
      - targets: ["localhost:1"]
""", 3, 3, "evaluation_intervall"),
    ("typo_key_scrape_config", """\
global:
  scrape_interval: 15s
scrape_configs:
  - job_name: a
    scrape_intervall: 10s
    static_configs:
      - targets: ["localhost:1"]
""", 5, 5, "scrape_intervall"),
    ("bad_duration", """\
global:
  scrape_interval: 1x
scrape_configs:
  - job_name: a
    static_configs:
      - targets: ["localhost:1"]
""", 2, 20, "1x"),
    ("timeout_greater_than_interval", """\
global:
  scrape_interval: 10s
  scrape_timeout: 20s
scrape_configs:
  - job_name: a
    static_configs:
      - targets: ["localhost:1"]
""", None, None, "greater than"),
    ("duplicate_key", """\
global:
  scrape_interval: 15s
  scrape_interval: 20s
""", 3, 3, "scrape_interval"),
    ("list_expected", """\
scrape_configs: {}
""", 1, 17, "scrape_configs"),
    ("bad_bool", """\
scrape_configs:
  - job_name: a
    honor_labels: maybe
    static_configs:
      - targets: ["localhost:1"]
""", 3, 19, "maybe"),
    ("tab_indent", "global:\n\tscrape_interval: 15s\n", 2, 1, ""),
    ("unknown_top_level_key", """\
global:
  scrape_interval: 15s
scrape_configz:
  - job_name: a
""", 3, 1, "scrape_configz"),
]

BAD_SYNTAX = """\
global:
  scrape_interval: 15s
scrape_configs:
  - job_name: [a
"""

DUPLICATE_JOB = """\
scrape_configs:
  - job_name: a
    static_configs:
      - targets: ["localhost:1"]
  - job_name: a
    static_configs:
      - targets: ["localhost:2"]
"""


def location_re(path, line=None, col=None):
    return re.compile(re.escape(path) + ":%s:%s: " % (line or r"\d+", col or r"\d+"))


class ToolUsageTests(CairnTestCase):

    def test_help(self):
        r = self.run_tool(["--help"])
        self.assertNoCrash(r)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("check config", r.stdout + r.stderr)

    def test_version(self):
        r = self.run_tool(["--version"])
        self.assertNoCrash(r)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout + r.stderr, r"\d+\.\d+")

    def test_no_arguments(self):
        r = self.run_tool([])
        self.assertNoCrash(r)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertRegex(r.stdout + r.stderr, r"(?i)usage")

    def test_unknown_subcommand(self):
        for args in (["frobnicate"], ["check", "nothing"]):
            with self.subTest(args=args):
                r = self.run_tool(args)
                self.assertNoCrash(r)
                self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
                self.assertRegex(r.stdout + r.stderr, r"(?i)usage")


class CheckConfigTests(CairnTestCase):

    def test_good_files(self):
        for name, text in (("good.yml", GOOD), ("minimal.yml", GOOD_MINIMAL),
                           ("unimplemented.yml", GOOD_WITH_UNIMPLEMENTED), ("empty.yml", EMPTY)):
            with self.subTest(file=name):
                path = self.write(name, text)
                r = self.run_tool(["check", "config", path])
                self.assertNoCrash(r)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertIn("SUCCESS", r.stdout + r.stderr)

    def test_bad_files(self):
        for name, text, line, col, needle in BAD:
            with self.subTest(case=name):
                path = self.write(name + ".yml", text)
                r = self.run_tool(["check", "config", path])
                self.assertNoCrash(r)
                out = r.stdout + r.stderr
                self.assertEqual(r.returncode, 1, out)
                self.assertRegex(out, location_re(path, line, col))
                self.assertIn(needle, out)
                self.assertNotIn("SUCCESS", out)

    def test_yaml_syntax_error(self):
        path = self.write("syntax.yml", BAD_SYNTAX)
        r = self.run_tool(["check", "config", path])
        self.assertNoCrash(r)
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 1, out)
        self.assertRegex(out, location_re(path))

    def test_duplicate_job_name(self):
        path = self.write("dup.yml", DUPLICATE_JOB)
        r = self.run_tool(["check", "config", path])
        self.assertNoCrash(r)
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 1, out)
        self.assertIn(path, out)

    def test_missing_file(self):
        path = self.path("nope.yml")
        r = self.run_tool(["check", "config", path])
        self.assertNoCrash(r)
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 1, out)
        self.assertIn(path, out)

    def test_several_files(self):
        good1 = self.write("good1.yml", GOOD)
        bad = self.write("bad.yml", BAD[0][1])
        good2 = self.write("good2.yml", GOOD_MINIMAL)
        r = self.run_tool(["check", "config", good1, bad, good2])
        self.assertNoCrash(r)
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 1, out)
        for path in (good1, bad, good2):
            self.assertIn(path, out, "%s not reported" % path)
        self.assertRegex(out, location_re(bad, 3, 3))
        self.assertGreaterEqual(out.count("SUCCESS"), 2, "the good files are not reported as such")

        r = self.run_tool(["check", "config", good1, good2])
        self.assertNoCrash(r)
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 0, out)
        for path in (good1, good2):
            self.assertIn(path, out)

    def _daemon_message(self, path):
        """Runs the daemon on path (it must refuse to start) and returns its message, from
        `path:line:col:` to the end of the log value or line."""
        r = self.run_cairn(["--config.file=%s" % path,
                            "--web.listen-address=127.0.0.1:%d" % free_port(),
                            "--storage.tsdb.path=%s" % self.path("data")])
        self.assertNoCrash(r)
        self.assertEqual(r.returncode, 1, r.stderr)
        loc = location_re(path)
        for line in r.stderr.splitlines():
            try:
                values = [v for _, v in parse_logfmt(line)]
            except ValueError:
                values = [line]
            for v in values:
                m = loc.search(v)
                if m:
                    return v[m.start():]
        self.fail("the daemon printed no %s:line:col: message:\n%s" % (path, r.stderr))

    def test_same_message_as_daemon(self):
        for name, text, line, col, needle in BAD:
            with self.subTest(case=name):
                path = self.write("same-" + name + ".yml", text)
                daemon_msg = self._daemon_message(path)
                r = self.run_tool(["check", "config", path])
                self.assertNoCrash(r)
                out = r.stdout + r.stderr
                self.assertEqual(r.returncode, 1, out)
                self.assertIn(daemon_msg, out, "cairn-tool's message differs from the daemon's")
                tool_line = next((l for l in out.splitlines() if location_re(path).search(l)), "")
                self.assertTrue(tool_line[location_re(path).search(tool_line).start():].startswith(daemon_msg)
                                if tool_line else False,
                                "tool %r vs daemon %r" % (tool_line, daemon_msg))


if __name__ == "__main__":
    cairn_test.main()
