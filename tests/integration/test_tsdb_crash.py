#!/usr/bin/env python3
"""tests/integration/test_tsdb_crash.py: the storage engine survives kill -9 without losing an
acknowledged sample.

One data directory lives through every round. A round starts `tsdb_crash_writer write` on it
(which replays the WAL and continues appending from 4 threads, each to its own series plus one
sample per batch to series all threads write concurrently, recording each batch in an
acknowledgement file only after its commit returned 0), waits for READY, lets it write for a
random 50-700 ms, kills it with SIGKILL and runs `tsdb_crash_writer verify`, which reopens the
directory and checks that every acknowledged sample is there with its exact value bits.
Extra rounds kill the writer a few milliseconds after it starts, at a random moment of its
WAL replay, and right after READY.

Environment:
    CAIRN_CRASH_WRITER  the tsdb_crash_writer binary (default:
                        tests/integration/tsdb_crash_writer under CAIRN_BUILDDIR or the
                        current directory)
    CAIRN_CRASH_ROUNDS  number of random-kill rounds (default 20)
    CAIRN_CRASH_SEED    seed of the kill schedule and the writers (default: random, printed)
    CAIRN_CRASH_KEEP=1  keep the data directory even when the test passes
    CAIRN_CRASH_WAL_SEGMENT, CAIRN_CRASH_CHECKPOINT_MS  WAL segment size (default 64 KiB) and
                        how often the writer asks for a truncation/checkpoint (default 20 ms;
                        0 = never)

On a failure the data directory and the logs are kept and their path is printed.
"""

import atexit
import ctypes
import os
import random
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

BUILDDIR = os.environ.get("CAIRN_BUILDDIR", os.getcwd())
WRITER = os.path.abspath(os.environ.get(
    "CAIRN_CRASH_WRITER", os.path.join(BUILDDIR, "tests", "integration", "tsdb_crash_writer")))
ROUNDS = int(os.environ.get("CAIRN_CRASH_ROUNDS", "20"))
SEED = int(os.environ.get("CAIRN_CRASH_SEED") or random.SystemRandom().randrange(1, 2**31))
KEEP = os.environ.get("CAIRN_CRASH_KEEP", "") == "1"
# Small WAL segments and frequent truncation calls, so that checkpoints (and the deletion of
# the segments they replace) happen many times per round and kills land in them.
WAL_SEGMENT = int(os.environ.get("CAIRN_CRASH_WAL_SEGMENT", str(64 * 1024)))
CHECKPOINT_MS = int(os.environ.get("CAIRN_CRASH_CHECKPOINT_MS", "20"))

READY_TIMEOUT = 60.0   # open + replay of everything written so far (slow under sanitizers)
VERIFY_TIMEOUT = 120.0
KILL_MIN_S, KILL_MAX_S = 0.050, 0.700
# Mean pause of a writer thread after each batch, drawn per round: 250 us commits about 11000
# batches a second (2.5M samples), 2000 us about 2000; this mix keeps the data (and so the later
# rounds' replay and verify) bounded while many kills still land inside a commit.
PAUSES_US = (250, 500, 2000)
DEFAULT_PAUSE_US = 500

CRASH_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                 "ThreadSanitizer", "Segmentation fault", "AddressSanitizer:DEADLYSIGNAL")

# ---------------------------------------------------------------------------------------------
# Child process hygiene: children die with the runner (PR_SET_PDEATHSIG) and at exit.

try:
    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # pragma: no cover - not Linux
    _PRCTL = None
PR_SET_PDEATHSIG = 1


def _child_preexec():
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
            p.wait(timeout=10)
        except Exception:
            pass


atexit.register(_kill_all_live)


def crash_report(text):
    for m in CRASH_MARKERS:
        if m in text:
            return m
    return None


def tail(text, n=4000):
    return text if len(text) <= n else "...\n" + text[-n:]


def log(msg):
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


class Writer:
    """One `tsdb_crash_writer write` process; stdout is a pipe (READY), stderr a file."""

    def __init__(self, data_dir, ack_path, seed, pause_us, stderr_path):
        self.stderr_path = stderr_path
        self._stderr = open(stderr_path, "wb")
        self.argv = [WRITER, "write", data_dir, ack_path, str(seed)]
        env = dict(os.environ, CAIRN_CRASH_PAUSE_US=str(pause_us),
                   CAIRN_CRASH_WAL_SEGMENT=str(WAL_SEGMENT),
                   CAIRN_CRASH_CHECKPOINT_MS=str(CHECKPOINT_MS))
        self.start_time = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._stderr, env=env, preexec_fn=_child_preexec)
        with _LIVE_LOCK:
            _LIVE.add(self.proc)
        self._out = b""

    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def wait_ready(self, timeout):
        """True once READY was printed; False if the process exited first. AssertionError on
        timeout."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"READY\n" not in self._out:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("writer not READY within %.0f s\nstderr:\n%s"
                                     % (timeout, tail(self.stderr())))
            r, _, _ = select.select([fd], [], [], min(left, 0.5))
            if r:
                chunk = os.read(fd, 4096)
                if not chunk:
                    return False
                self._out += chunk
        return True

    def running(self):
        return self.proc.poll() is None

    def kill(self):
        """SIGKILL (if still running) and reap. Returns the exit status."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGKILL)
            except OSError:
                pass
        try:
            self.proc.wait(timeout=10)
        finally:
            with _LIVE_LOCK:
                _LIVE.discard(self.proc)
            if self.proc.stdout:
                self.proc.stdout.close()
            if not self._stderr.closed:
                self._stderr.close()
        return self.proc.returncode


def count_complete_lines(path):
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


class TsdbCrashTest(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="cairn-crash-")
        self.data = os.path.join(self.tmp, "data")
        self.ack = os.path.join(self.tmp, "acks.txt")
        self.writers = []
        self.passed = False  # set at the very end of the test
        self.last_open_seconds = 0.0
        self.repairs = 0       # rounds whose reopen found a torn WAL tail
        self.chunk_repairs = 0 # rounds whose reopen found a torn chunks_head file
        self.extra_rounds = 0  # rounds after which the unacknowledged extra samples grew
        self.last_extra = 0
        self.verified_writers = 0
        self.rejected_present = 0
        self.rounds_log = []  # (round, kind, first ack line, last ack line)

    def tearDown(self):
        for w in self.writers:
            try:
                w.kill()
            except Exception:
                pass
        ok = self.passed
        if ok and not KEEP:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            log("data directory, ack file and logs kept in %s" % self.tmp)
            for r, kind, a, b in self.rounds_log:
                log("  round %d (%s): ack lines %d..%d" % (r, kind, a, b))

    def verify(self, rnd, kind, writer):
        first = self.rounds_log[-1][3] + 1 if self.rounds_log else 1
        last = count_complete_lines(self.ack)
        self.rounds_log.append((rnd, kind, first, last))
        argv = [WRITER, "verify", self.data, self.ack]
        try:
            res = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, timeout=VERIFY_TIMEOUT,
                                 preexec_fn=_child_preexec, errors="replace", text=True)
        except subprocess.TimeoutExpired as e:
            raise AssertionError("round %d: verify did not finish within %.0f s (seed %d)\n%s"
                                 % (rnd, VERIFY_TIMEOUT, SEED, e.stdout or ""))
        summary = [line for line in res.stdout.splitlines()
                   if line.startswith("verify: opened") or line.startswith("verify: checked")]
        m = re.search(r"^verify: opened in ([0-9.]+) s", res.stdout, re.M)
        if m:
            self.last_open_seconds = float(m.group(1))
        m = re.search(r"rejected but present (\d+)", res.stdout)
        if m:
            self.rejected_present = int(m.group(1))
        m = re.search(r"unacknowledged extra (\d+)", res.stdout)
        if m:
            if int(m.group(1)) > self.last_extra:
                self.extra_rounds += 1
            self.last_extra = int(m.group(1))
        # The engine logs a warning when it truncates a torn or corrupt WAL tail on open; the
        # repair may happen in this verify or in the round's later writer (mode "replay").
        texts = [res.stderr] + [w.stderr() for w in self.writers[self.verified_writers:]]
        self.verified_writers = len(self.writers)
        if any(re.search(r"WAL is torn|WAL.*corrupt", t) for t in texts):
            self.repairs += 1
            kind += " +walrepair"
        if any(re.search(r"[Cc]hunk.*(torn|corrupt)", t) for t in texts):
            self.chunk_repairs += 1
            kind += " +chunkrepair"
        log("round %2d %-16s ack lines %6d..%-6d %s" % (rnd, kind, first, last, " | ".join(
            s[len("verify: "):] for s in summary)))
        marker = crash_report(res.stderr)
        if res.returncode != 0 or marker:
            wlog = writer.stderr() if writer else ""
            raise AssertionError(
                "round %d (%s, seed %d): verify exited %d%s\n%s"
                "--- verify stdout:\n%s\n--- verify stderr:\n%s\n--- writer stderr of the round:\n%s"
                % (rnd, kind, SEED, res.returncode,
                   " with a sanitizer report (%s)" % marker if marker else "",
                   self.ack_lines_rounds(res.stdout),
                   tail(res.stdout, 6000), tail(res.stderr), tail(wlog)))
        return res

    def ack_lines_rounds(self, text):
        """Which round wrote each ack line the verifier's output mentions."""
        out = []
        for line in sorted({int(n) for n in re.findall(r"ack line (\d+)", text)}):
            for r, kind, a, b in self.rounds_log:
                if a <= line <= b:
                    out.append("ack line %d was acknowledged in round %d (%s)\n" % (line, r, kind))
                    break
        return "".join(out)

    def start_writer(self, rnd, rng, pause_us):
        w = Writer(self.data, self.ack, rng.randrange(1, 2**62), pause_us,
                   os.path.join(self.tmp, "writer-%02d-%d.stderr" % (rnd, len(self.writers))))
        self.writers.append(w)
        return w

    def check_killed(self, rnd, w, code):
        """The writer must have been killed by us, not have exited on its own."""
        err = w.stderr()
        if code != -signal.SIGKILL:
            self.fail("round %d (seed %d): writer exited with %s before it was killed\n"
                      "stderr:\n%s" % (rnd, SEED, code, tail(err)))
        marker = crash_report(err)
        self.assertIsNone(marker, "round %d: writer stderr contains %r:\n%s"
                          % (rnd, marker, tail(err)))

    def kill_at(self, rnd, w, delay, after_ready):
        """Kills w delay seconds after READY (after_ready) or after its exec."""
        if after_ready and not w.wait_ready(READY_TIMEOUT):
            self.check_killed(rnd, w, w.kill())  # exited before READY: fails with its stderr
        if after_ready:
            time.sleep(delay)
        else:
            time.sleep(max(0.0, delay - (time.monotonic() - w.start_time)))
        if not w.running():
            self.check_killed(rnd, w, w.kill())
        self.check_killed(rnd, w, w.kill())

    def random_kill(self, rnd, rng):
        """Starts a writer with a random pace, kills it 50-700 ms after READY. Returns a label
        for the log."""
        pause_us = rng.choice(PAUSES_US)
        delay = rng.uniform(KILL_MIN_S, KILL_MAX_S)
        w = self.start_writer(rnd, rng, pause_us)
        self.kill_at(rnd, w, delay, after_ready=True)
        return w, "kill@%3dms/p%d" % (round(delay * 1000), pause_us)

    def random_round(self, rnd, rng):
        before = count_complete_lines(self.ack)
        w, kind = self.random_kill(rnd, rng)
        self.verify(rnd, kind, w)
        return count_complete_lines(self.ack) > before

    def early_round(self, rnd, rng, mode):
        """Kills a writer early:
          "start"   0-5 ms after its exec (loading, locking, opening);
          "replay"  right after a random kill (no verify in between, so this writer's open
                    finds the killed writer's WAL tail and repairs it), at a random moment
                    within the time an open took last (during replay and repair);
          "ready"   as soon as it printed READY (its first commits)."""
        if mode == "ready":
            w = self.start_writer(rnd, rng, DEFAULT_PAUSE_US)
            self.kill_at(rnd, w, 0.0, after_ready=True)
            kind = "kill@READY"
        elif mode == "start":
            delay = rng.uniform(0.0, 0.005)
            w = self.start_writer(rnd, rng, DEFAULT_PAUSE_US)
            self.kill_at(rnd, w, delay, after_ready=False)
            kind = "kill@%.1fms" % (delay * 1000)
        else:
            _, first = self.random_kill(rnd, rng)
            delay = rng.uniform(0.0, self.last_open_seconds + 0.005)
            w = self.start_writer(rnd, rng, DEFAULT_PAUSE_US)
            self.kill_at(rnd, w, delay, after_ready=False)
            kind = "%s+kill@%.1fms" % (first, delay * 1000)
        self.verify(rnd, kind, w)

    def test_kill9_never_loses_acknowledged_samples(self):
        if not os.access(WRITER, os.X_OK):
            self.fail("%s is not an executable file (set CAIRN_CRASH_WRITER)" % WRITER)
        log("crash test: %d rounds, seed %d (reproduce with CAIRN_CRASH_SEED=%d), writer %s, "
            "directory %s" % (ROUNDS, SEED, SEED, WRITER, self.tmp))
        rng = random.Random(SEED)
        started = time.monotonic()
        early_at = max(1, ROUNDS // 2)
        progressed = 0
        rnd = 0
        for i in range(ROUNDS):
            rnd += 1
            if self.random_round(rnd, rng):
                progressed += 1
            if i + 1 == early_at:
                for mode in ("start", "replay"):
                    rnd += 1
                    self.early_round(rnd, rng, mode)
        for mode in ("start", "replay", "ready"):
            rnd += 1
            self.early_round(rnd, rng, mode)
        acked = count_complete_lines(self.ack)
        checkpoints = sum(w.stderr().count("WAL checkpoint written") for w in self.writers)
        log("crash test: the writers wrote %d WAL checkpoints" % checkpoints)
        if CHECKPOINT_MS:
            self.assertGreater(checkpoints, 0, "no WAL checkpoint was written")
        log("crash test: %d rounds in %.1f s, %d ack lines; %d of %d random rounds acknowledged "
            "new batches; %d rounds repaired a torn WAL tail, %d a torn chunk file; %d rounds "
            "left committed but unacknowledged samples; %d shared-series samples the commits "
            "rejected are present after restarts"
            % (rnd, time.monotonic() - started, acked, progressed, ROUNDS, self.repairs,
               self.chunk_repairs, self.extra_rounds, self.rejected_present))
        self.assertGreater(acked, 0, "the writer never acknowledged a batch")
        self.assertGreaterEqual(progressed, (ROUNDS + 1) // 2,
                                "the writer made progress in only %d of %d rounds"
                                % (progressed, ROUNDS))
        self.passed = True


def main():
    def _term(signum, frame):
        raise SystemExit(128 + signum)  # atexit then kills the children

    signal.signal(signal.SIGTERM, _term)
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
    sys.exit(0 if failed == 0 and result.testsRun > 0 else 1)


if __name__ == "__main__":
    main()
