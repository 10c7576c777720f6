"""Shared helpers for Cairn's integration tests (Python 3 standard library only).

The tests start the real `cairn` binary on a free loopback port, talk real HTTP to it and send
it real signals. Paths come from the environment that `make check` sets:

    CAIRN_BINARY   path to the cairn daemon
    CAIRN_TOOL     path to cairn-tool
    CAIRN_SRCDIR   the source tree
    CAIRN_SANITIZERS=1  the binaries were built with --enable-sanitizers (no jemalloc)

Every child process is killed when the test that started it ends (tearDown / addCleanup), when
the interpreter exits (atexit), and, on Linux, when the test runner dies (PR_SET_PDEATHSIG).
"""

import atexit
import ctypes
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

SRCDIR = os.path.abspath(os.environ.get("CAIRN_SRCDIR", os.path.join(os.path.dirname(__file__), "..", "..")))
CAIRN_BINARY = os.path.abspath(os.environ.get("CAIRN_BINARY", os.path.join(SRCDIR, "cairn")))
CAIRN_TOOL = os.path.abspath(os.environ.get("CAIRN_TOOL", os.path.join(SRCDIR, "cairn-tool")))
SANITIZERS = os.environ.get("CAIRN_SANITIZERS", "") == "1"

READY_TIMEOUT = 10.0
HTTP_TIMEOUT = 10.0
RUN_TIMEOUT = 8.0

# Markers of a sanitizer report or a crash in a child's stderr.
CRASH_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                 "ThreadSanitizer", "Segmentation fault", "AddressSanitizer:DEADLYSIGNAL")

# The line format every log line must have.
LOG_LINE_RE = re.compile(r"^ts=\S+ level=(debug|info|warn|error) caller=\S+:\d+ msg=")
LOG_TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


# ---------------------------------------------------------------------------------------------
# Child process hygiene

try:
    _LIBC = ctypes.CDLL(None, use_errno=True)
    _PRCTL = _LIBC.prctl
except (OSError, AttributeError):  # pragma: no cover - not Linux
    _PRCTL = None

PR_SET_PDEATHSIG = 1


def _child_preexec():
    """Runs in the forked child: die with the test runner."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


_LIVE = set()
_LIVE_LOCK = threading.Lock()


def _kill_all_live():
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for p in procs:
        try:
            p.kill()
        except Exception:
            pass


atexit.register(_kill_all_live)


def run(argv, timeout=RUN_TIMEOUT, cwd=None, input=None):
    """Runs a command to completion; returns CompletedProcess with text stdout/stderr.

    On timeout the child is killed and an AssertionError is raised (the test fails)."""
    try:
        return subprocess.run(argv, cwd=cwd, input=input, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout,
                              preexec_fn=_child_preexec, errors="replace", text=True)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        raise AssertionError("%r did not exit within %.0f s (killed)\nstdout:\n%s\nstderr:\n%s"
                             % (argv, timeout, out[-2000:], err[-2000:]))


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_request(port, method, path, body=None, headers=None, timeout=HTTP_TIMEOUT):
    """One request on a fresh connection. Returns (status, headers, body); never raises on
    4xx/5xx."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, resp.headers, data
    finally:
        conn.close()


def crash_report(text):
    """The first crash/sanitizer marker found in text, or None."""
    for m in CRASH_MARKERS:
        if m in text:
            return m
    return None


# ---------------------------------------------------------------------------------------------
# logfmt

_LOGFMT_KEY = re.compile(r"[A-Za-z0-9_.\-/]+")


def parse_logfmt(line):
    """Parses one logfmt line into a list of (key, value) pairs. Raises ValueError."""
    pairs = []
    i, n = 0, len(line)
    while i < n:
        if line[i] == " ":
            i += 1
            continue
        m = _LOGFMT_KEY.match(line, i)
        if not m:
            raise ValueError("bad key at column %d in %r" % (i + 1, line))
        key = m.group(0)
        i = m.end()
        if i >= n or line[i] != "=":
            raise ValueError("key %r without '=' in %r" % (key, line))
        i += 1
        if i < n and line[i] == '"':
            i += 1
            out = []
            while True:
                if i >= n:
                    raise ValueError("unterminated quoted value for %r in %r" % (key, line))
                c = line[i]
                if c == "\\":
                    if i + 1 >= n:
                        raise ValueError("dangling backslash in %r" % line)
                    e = line[i + 1]
                    out.append({"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}.get(e, "\\" + e))
                    i += 2
                elif c == '"':
                    i += 1
                    break
                else:
                    out.append(c)
                    i += 1
            if i < n and line[i] != " ":
                raise ValueError("garbage after quoted value of %r in %r" % (key, line))
            pairs.append((key, "".join(out)))
        else:
            j = line.find(" ", i)
            if j < 0:
                j = n
            value = line[i:j]
            if '"' in value:
                raise ValueError("stray quote in value of %r in %r" % (key, line))
            pairs.append((key, value))
            i = j
    return pairs


def log_records(text):
    """Parses every complete log line in text; lines that are not logfmt become {'_raw': line}."""
    records = []
    for line in text.splitlines():
        try:
            rec = dict(parse_logfmt(line))
        except ValueError:
            rec = {}
        rec["_raw"] = line
        records.append(rec)
    return records


def check_log_lines(text):
    """Returns a list of problems with the log text (empty if every line is well-formed)."""
    problems = []
    for no, line in enumerate(text.splitlines(), 1):
        if not LOG_LINE_RE.match(line):
            problems.append("line %d does not match %s: %r" % (no, LOG_LINE_RE.pattern, line))
            continue
        try:
            pairs = parse_logfmt(line)
        except ValueError as e:
            problems.append("line %d is not valid logfmt (%s)" % (no, e))
            continue
        keys = [k for k, _ in pairs]
        if keys[:4] != ["ts", "level", "caller", "msg"]:
            problems.append("line %d: keys start %r, expected ts level caller msg" % (no, keys[:4]))
        if len(set(keys)) != len(keys):
            problems.append("line %d: duplicate keys %r" % (no, keys))
        if not LOG_TS_RE.match(pairs[0][1]):
            problems.append("line %d: ts %r is not RFC 3339" % (no, pairs[0][1]))
    return problems


# ---------------------------------------------------------------------------------------------
# Prometheus text exposition format 0.0.4

METRIC_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
METRIC_TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


class Family:
    def __init__(self, name):
        self.name = name
        self.help = None
        self.type = None
        self.samples = []  # list of (name, labels dict, value)

    def __repr__(self):
        return "Family(%s, %s, %d samples)" % (self.name, self.type, len(self.samples))


class Metrics(dict):
    """family name -> Family, with look-ups by sample name and labels."""

    def samples(self, name):
        out = []
        for fam in self.values():
            for s in fam.samples:
                if s[0] == name:
                    out.append(s)
        return out

    def value(self, name, labels=None):
        """The value of the one sample called name whose labels include labels; None if there
        is none; AssertionError if several match."""
        labels = labels or {}
        found = [s for s in self.samples(name) if all(s[1].get(k) == v for k, v in labels.items())]
        if not found:
            return None
        if len(found) > 1:
            raise AssertionError("%d samples match %s%r" % (len(found), name, labels))
        return found[0][2]


def _unescape_label_value(s, i, lineno):
    """s[i] is just after the opening quote. Returns (value, index after closing quote)."""
    out = []
    n = len(s)
    while True:
        if i >= n:
            raise ValueError("line %d: unterminated label value" % lineno)
        c = s[i]
        if c == "\\":
            if i + 1 >= n:
                raise ValueError("line %d: dangling backslash" % lineno)
            e = s[i + 1]
            if e == "n":
                out.append("\n")
            elif e in ('"', "\\"):
                out.append(e)
            else:
                raise ValueError("line %d: bad escape \\%s in label value" % (lineno, e))
            i += 2
        elif c == '"':
            return "".join(out), i + 1
        elif c == "\n":
            raise ValueError("line %d: newline in label value" % lineno)
        else:
            out.append(c)
            i += 1


def _parse_float(tok, lineno):
    if tok in ("+Inf", "Inf"):
        return float("inf")
    if tok == "-Inf":
        return float("-inf")
    if tok == "NaN":
        return float("nan")
    if not re.match(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$", tok):
        raise ValueError("line %d: bad value %r" % (lineno, tok))
    return float(tok)


def _family_for(families, name):
    fam = families.get(name)
    if fam is not None and fam.type not in ("histogram", "summary"):
        return fam
    if fam is not None and fam.type == "summary":
        return fam  # quantile samples carry the family name
    for suffix, types in (("_bucket", ("histogram",)), ("_sum", ("histogram", "summary")),
                          ("_count", ("histogram", "summary"))):
        if name.endswith(suffix):
            base = families.get(name[: -len(suffix)])
            if base is not None and base.type in types:
                return base
    return None


def parse_text_format(text):
    """Parses and validates a text-format exposition. Returns Metrics; raises ValueError with
    the line number on anything malformed:
      * every line is a comment or `name{labels} value [timestamp]`;
      * every family has one HELP and one TYPE, both before its samples;
      * a family's samples are contiguous; no duplicate series;
      * histogram buckets are cumulative, le increases, the last is +Inf and equals _count,
        and _sum/_count exist for every bucket set."""
    if text and not text.endswith("\n"):
        raise ValueError("exposition does not end with a newline")
    families = Metrics()
    finished = set()
    current = None
    seen_series = set()
    for lineno, line in enumerate(text.split("\n")[:-1], 1):
        if line.strip() == "":
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[0] == "#" and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not METRIC_NAME_RE.fullmatch(name):
                    raise ValueError("line %d: bad metric name %r" % (lineno, name))
                fam = families.get(name)
                if fam is None:
                    fam = families[name] = Family(name)
                if fam.samples or name in finished:
                    raise ValueError("line %d: %s for %s after its samples" % (lineno, parts[1], name))
                if parts[1] == "HELP":
                    if fam.help is not None:
                        raise ValueError("line %d: second HELP for %s" % (lineno, name))
                    fam.help = parts[3] if len(parts) > 3 else ""
                else:
                    if fam.type is not None:
                        raise ValueError("line %d: second TYPE for %s" % (lineno, name))
                    t = parts[3] if len(parts) > 3 else ""
                    if t not in METRIC_TYPES:
                        raise ValueError("line %d: bad TYPE %r for %s" % (lineno, t, name))
                    fam.type = t
                if current is not None and current is not fam:
                    finished.add(current.name)
                    current = None
            continue
        # A sample.
        m = METRIC_NAME_RE.match(line)
        if not m:
            raise ValueError("line %d: not a comment or a sample: %r" % (lineno, line))
        name = m.group(0)
        i = m.end()
        labels = {}
        if i < len(line) and line[i] == "{":
            i += 1
            while True:
                while i < len(line) and line[i] == " ":
                    i += 1
                if i < len(line) and line[i] == "}":
                    i += 1
                    break
                lm = LABEL_NAME_RE.match(line, i)
                if not lm:
                    raise ValueError("line %d: bad label name in %r" % (lineno, line))
                lname = lm.group(0)
                i = lm.end()
                if line[i : i + 2] != '="':
                    raise ValueError("line %d: expected =\" after label %s" % (lineno, lname))
                lvalue, i = _unescape_label_value(line, i + 2, lineno)
                if lname in labels:
                    raise ValueError("line %d: duplicate label %s" % (lineno, lname))
                labels[lname] = lvalue
                if i < len(line) and line[i] == ",":
                    i += 1
                elif i < len(line) and line[i] == "}":
                    i += 1
                    break
                else:
                    raise ValueError("line %d: expected , or } in %r" % (lineno, line))
        if i >= len(line) or line[i] not in " \t":
            raise ValueError("line %d: no space before the value in %r" % (lineno, line))
        rest = line[i:].split()
        if len(rest) not in (1, 2):
            raise ValueError("line %d: expected value [timestamp] in %r" % (lineno, line))
        value = _parse_float(rest[0], lineno)
        if len(rest) == 2 and not re.fullmatch(r"-?\d+", rest[1]):
            raise ValueError("line %d: bad timestamp %r" % (lineno, rest[1]))
        fam = _family_for(families, name)
        if fam is None or fam.help is None or fam.type is None:
            raise ValueError("line %d: sample %s has no HELP and TYPE before it" % (lineno, name))
        if fam is not current:
            if fam.name in finished or fam.samples:
                raise ValueError("line %d: samples of %s are not contiguous" % (lineno, fam.name))
            if current is not None:
                finished.add(current.name)
            current = fam
        key = (name, tuple(sorted(labels.items())))
        if key in seen_series:
            raise ValueError("line %d: duplicate series %s%r" % (lineno, name, labels))
        seen_series.add(key)
        fam.samples.append((name, labels, value))
    for fam in families.values():
        if fam.type == "histogram":
            _check_histogram(fam)
    return families


def _check_histogram(fam):
    groups = {}
    sums = {}
    counts = {}
    for name, labels, value in fam.samples:
        if name == fam.name + "_bucket":
            if "le" not in labels:
                raise ValueError("%s: bucket without le" % fam.name)
            rest = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
            groups.setdefault(rest, []).append((labels["le"], value))
        elif name == fam.name + "_sum":
            sums[tuple(sorted(labels.items()))] = value
        elif name == fam.name + "_count":
            counts[tuple(sorted(labels.items()))] = value
        else:
            raise ValueError("%s: unexpected sample %s in a histogram" % (fam.name, name))
    for rest, buckets in groups.items():
        prev_le, prev_v = float("-inf"), 0.0
        for le, v in buckets:
            lef = _parse_float(le, 0)
            if not lef > prev_le:
                raise ValueError("%s%r: le %s not increasing" % (fam.name, dict(rest), le))
            if v < prev_v:
                raise ValueError("%s%r: bucket le=%s is %g < previous %g (not cumulative)"
                                 % (fam.name, dict(rest), le, v, prev_v))
            prev_le, prev_v = lef, v
        if prev_le != float("inf"):
            raise ValueError("%s%r: last bucket is not le=\"+Inf\"" % (fam.name, dict(rest)))
        if rest not in counts or rest not in sums:
            raise ValueError("%s%r: missing _sum or _count" % (fam.name, dict(rest)))
        if counts[rest] != prev_v:
            raise ValueError("%s%r: +Inf bucket %g != _count %g" % (fam.name, dict(rest), prev_v, counts[rest]))
    if set(counts) != set(groups):
        raise ValueError("%s: _count without buckets" % fam.name)


# ---------------------------------------------------------------------------------------------
# The daemon


class CairnProcess:
    """A running `cairn` daemon on a free loopback port.

    args         extra command-line arguments
    config_text  if given, written to <tmpdir>/<config_name> and passed as --config.file
    tmpdir       directory for config, data and logs (default: a private TemporaryDirectory)
    data_dir     --storage.tsdb.path (default <tmpdir>/data; False: do not pass the flag)
    wait_ready   wait (<= 10 s) until GET /-/ready returns 200
    """

    _seq = 0

    def __init__(self, args=(), config_text=None, tmpdir=None, data_dir=None, wait_ready=True,
                 config_name="cairn.yml", binary=None, ready_timeout=READY_TIMEOUT):
        self._own_tmp = None
        if tmpdir is None:
            self._own_tmp = tempfile.TemporaryDirectory(prefix="cairn-test-")
            tmpdir = self._own_tmp.name
        self.tmpdir = tmpdir
        self.binary = binary or CAIRN_BINARY
        self.args = list(args)
        if data_dir is None:
            data_dir = os.path.join(tmpdir, "data")
        self.data_dir = data_dir
        self.config_path = None
        if config_text is not None:
            self.config_path = os.path.join(tmpdir, config_name)
            self.write_config(config_text)
        CairnProcess._seq += 1
        self._id = CairnProcess._seq
        self.proc = None
        self.port = None
        self._stderr_file = None
        self._stdout_file = None
        self.stderr_path = None
        self.exit_code = None
        try:
            self._start(wait_ready, ready_timeout)
        except BaseException:
            self.stop()
            raise

    # -- start-up ----------------------------------------------------------------------------

    def argv(self):
        argv = [self.binary, "--web.listen-address=127.0.0.1:%d" % self.port]
        if self.data_dir is not False:
            argv.append("--storage.tsdb.path=%s" % self.data_dir)
        if self.config_path is not None:
            argv.append("--config.file=%s" % self.config_path)
        return argv + self.args

    def _spawn(self):
        self.port = free_port()
        self.stderr_path = os.path.join(self.tmpdir, "cairn-%d-%d.stderr" % (self._id, self.port))
        self.stdout_path = os.path.join(self.tmpdir, "cairn-%d-%d.stdout" % (self._id, self.port))
        self._stderr_file = open(self.stderr_path, "wb")
        self._stdout_file = open(self.stdout_path, "wb")
        self.spawn_time = time.time()
        self.proc = subprocess.Popen(self.argv(), cwd=self.tmpdir, stdin=subprocess.DEVNULL,
                                     stdout=self._stdout_file, stderr=self._stderr_file,
                                     preexec_fn=_child_preexec)
        with _LIVE_LOCK:
            _LIVE.add(self.proc)

    def _start(self, wait_ready, ready_timeout):
        for attempt in range(3):
            self._spawn()
            if not wait_ready:
                return
            deadline = time.monotonic() + ready_timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    status, _, _ = http_request(self.port, "GET", "/-/ready", timeout=1.0)
                    if status == 200:
                        return
                except (OSError, http.client.HTTPException):
                    pass
                time.sleep(0.05)
            if self.proc.poll() is not None:
                log = self.log()
                if attempt < 2 and re.search(r"(?i)address already in use|EADDRINUSE", log):
                    self._reap()
                    continue  # lost the race for the port: try another one
                raise AssertionError("cairn exited with %s before it was ready\nargv: %r\nstderr:\n%s"
                                     % (self.proc.returncode, self.argv(), log[-4000:]))
            raise AssertionError("cairn not ready within %.0f s\nargv: %r\nstderr:\n%s"
                                 % (ready_timeout, self.argv(), self.log()[-4000:]))

    # -- HTTP --------------------------------------------------------------------------------

    def request(self, method, path, body=None, headers=None, timeout=HTTP_TIMEOUT):
        return http_request(self.port, method, path, body=body, headers=headers, timeout=timeout)

    def get(self, path, headers=None):
        return self.request("GET", path, headers=headers)

    def head(self, path, headers=None):
        return self.request("HEAD", path, headers=headers)

    def post(self, path, body=b"", headers=None):
        return self.request("POST", path, body=body, headers=headers)

    def metrics(self):
        """GET /metrics, parsed and validated (AssertionError on any problem)."""
        status, headers, body = self.get("/metrics")
        if status != 200:
            raise AssertionError("GET /metrics returned %d: %r" % (status, body[:500]))
        text = body.decode("utf-8")
        try:
            return parse_text_format(text)
        except ValueError as e:
            raise AssertionError("GET /metrics is not valid text format: %s\n%s" % (e, text[:3000]))

    def metric(self, name, labels=None):
        return self.metrics().value(name, labels)

    def wait_metric(self, name, labels, predicate, timeout=5.0):
        """Polls /metrics until predicate(value) holds; returns the value. AssertionError on
        timeout."""
        deadline = time.monotonic() + timeout
        value = None
        while True:
            value = self.metric(name, labels)
            if value is not None and predicate(value):
                return value
            if time.monotonic() >= deadline:
                raise AssertionError("%s%r = %r did not reach the expected value within %.0f s"
                                     % (name, labels or {}, value, timeout))
            time.sleep(0.1)

    # -- logs --------------------------------------------------------------------------------

    def log(self):
        """stderr so far."""
        if not self.stderr_path or not os.path.exists(self.stderr_path):
            return ""
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", errors="replace")

    def stdout(self):
        if not getattr(self, "stdout_path", None) or not os.path.exists(self.stdout_path):
            return ""
        with open(self.stdout_path, "rb") as f:
            return f.read().decode("utf-8", errors="replace")

    def log_mark(self):
        """A position in the log for wait_log(since=...)."""
        return len(self.log())

    def wait_log(self, regex, timeout=5.0, since=0):
        """Waits until regex matches a complete line of stderr after position since; returns the
        match. AssertionError on timeout."""
        pattern = re.compile(regex)
        deadline = time.monotonic() + timeout
        while True:
            text = self.log()[since:]
            complete = text[: text.rfind("\n") + 1]
            for line in complete.splitlines():
                m = pattern.search(line)
                if m:
                    return m
            if time.monotonic() >= deadline:
                raise AssertionError("no log line matching %r within %.1f s; stderr:\n%s"
                                     % (regex, timeout, text[-4000:]))
            time.sleep(0.05)

    # -- process -----------------------------------------------------------------------------

    @property
    def pid(self):
        return self.proc.pid

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=10.0):
        """Waits for the process to exit; returns its exit code (negative: killed by a
        signal). AssertionError if it is still running after timeout (it is then killed)."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("cairn did not exit within %.0f s; stderr:\n%s"
                                 % (timeout, self.log()[-4000:])) from None
        self._reap()
        return code

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self._reap()

    def _reap(self):
        if self.proc is not None and self.proc.poll() is not None:
            self.exit_code = self.proc.returncode
            with _LIVE_LOCK:
                _LIVE.discard(self.proc)
        for f in (self._stderr_file, self._stdout_file):
            if f is not None and not f.closed:
                f.close()

    def stop(self, timeout=10.0):
        """SIGTERM, then SIGKILL after timeout. Returns the exit code. Never raises."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                try:
                    self.proc.send_signal(signal.SIGTERM)
                    self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    pass
                except OSError:
                    pass
            self.kill()
        finally:
            if self._own_tmp is not None:
                self._own_tmp.cleanup()
                self._own_tmp = None
        return self.exit_code

    def write_config(self, text):
        """Atomically replaces the config file's content."""
        if self.config_path is None:
            self.config_path = os.path.join(self.tmpdir, "cairn.yml")
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.config_path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# ---------------------------------------------------------------------------------------------
# unittest glue


class CairnTestCase(unittest.TestCase):
    """A fresh temporary directory per test; daemons started with self.start() are stopped in
    cleanup, and their stderr is checked for sanitizer reports and crashes."""

    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="cairn-test-")
        self.addCleanup(self._tmp.cleanup)
        self.tmp = self._tmp.name

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def write(self, name, text):
        p = self.path(name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def start(self, args=(), config_text=None, **kw):
        kw.setdefault("tmpdir", self.tmp)
        p = CairnProcess(args, config_text=config_text, **kw)
        self.addCleanup(self._finish, p)
        return p

    def _finish(self, p):
        p.stop()
        marker = crash_report(p.log())
        if marker:
            self.fail("cairn stderr contains %r:\n%s" % (marker, p.log()[-6000:]))

    def run_cairn(self, args, timeout=RUN_TIMEOUT):
        """Runs cairn to completion in the test's directory (for flag and config errors)."""
        return run([CAIRN_BINARY] + list(args), timeout=timeout, cwd=self.tmp)

    def run_tool(self, args, timeout=RUN_TIMEOUT):
        return run([CAIRN_TOOL] + list(args), timeout=timeout, cwd=self.tmp)

    def assertNoCrash(self, result):
        self.assertGreaterEqual(result.returncode, 0,
                                "killed by signal %d; stderr:\n%s" % (-result.returncode, result.stderr[-3000:]))
        marker = crash_report(result.stderr)
        self.assertIsNone(marker, "stderr contains %r:\n%s" % (marker, result.stderr[-3000:]))


def main():
    """Runs the tests of __main__, prints `N passed, N failed, N skipped` and exits non-zero
    on any failure."""
    def _term(signum, frame):
        raise SystemExit(128 + signum)  # atexit then kills the daemons

    signal.signal(signal.SIGTERM, _term)
    for binary in (CAIRN_BINARY, CAIRN_TOOL):
        if not os.access(binary, os.X_OK):
            sys.stderr.write("warning: %s is not an executable file\n" % binary)
    prog = unittest.main(module="__main__", exit=False, verbosity=2)
    result = prog.result

    def tid(t):
        return getattr(t, "test_case", t).id()

    failed_ids = {tid(t) for t, _ in result.failures + result.errors}
    failed_ids |= {tid(t) for t in result.unexpectedSuccesses}
    skipped_ids = {tid(t) for t, _ in result.skipped} - failed_ids
    failed = len(failed_ids)
    skipped = len(skipped_ids)
    passed = max(result.testsRun - failed - skipped, 0)
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    sys.stdout.flush()
    ok = failed == 0 and result.testsRun > 0
    sys.exit(0 if ok else 1)
