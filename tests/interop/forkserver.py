"""Start ``collector`` processes by forking one process that has imported the collector.

A new Python process spends about 0.75 s importing the collector before it runs a line
of its own, and the crash tests start a server twice and the console command three
times per run. The fork server pays that once per test process: it imports every module
of the collector, then forks each server and each console command from there. What it
forks is a real process of its own (its own PID, session, descriptors and memory, the
environment the test gave it), killed by ``kill -9`` like any other and started in a
tenth of the time.

``ForkServer.spawn(argv, env, stdout, stderr)`` returns a ``Child`` with what the tests
use of ``subprocess.Popen``: ``pid``, ``poll()``, ``wait(timeout)``, ``returncode``.
The child runs ``serverproc.child_main(argv)`` (the collector command, with the pause
point its environment names).

Protocol on the fork server's stdin and stdout, one JSON object per line: the test sends
``{"argv", "env", "stdout", "stderr"}``; the fork server answers ``{"pid"}`` at once and
``{"exited": pid, "code"}`` when it has reaped that child (``-N`` for a child killed by
signal N, as ``Popen`` says). The fork server ends when its stdin closes, and its
children die with it (``PR_SET_PDEATHSIG``), as it dies with the test process.
"""

import atexit
import contextlib
import importlib
import json
import os
import pkgutil
import queue
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve()


class Child:
    """A process the fork server started (what the tests use of ``subprocess.Popen``)."""

    def __init__(self, forks, pid):
        self._forks = forks
        self.pid = pid

    @property
    def returncode(self):
        return self._forks.exit_code(self.pid)

    def poll(self):
        return self.returncode

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._forks.exited:
            while self.returncode is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)
                if self._forks.broken:
                    raise RuntimeError("the fork server ended")
                self._forks.exited.wait(left)
        return self.returncode


class ForkServer:
    """The fork server of this test process (``ForkServer.get()``), started on first use."""

    _instance = None
    _lock = threading.Lock()

    @classmethod
    def get(cls):
        with cls._lock:
            if cls._instance is None or cls._instance.broken:
                cls._instance = cls()
                atexit.register(cls._instance.close)
            return cls._instance

    def __init__(self):
        env = {**os.environ, "COLLECTOR_TEST_PARENT": str(os.getpid())}
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env=env, start_new_session=True)
        self.codes = {}
        self.broken = False
        self.exited = threading.Condition()
        self._pids = queue.Queue()
        self._send = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="forkserver", daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            message = json.loads(line)
            if "pid" in message:
                self._pids.put(message["pid"])
            else:
                with self.exited:
                    self.codes[message["exited"]] = message["code"]
                    self.exited.notify_all()
        with self.exited:
            self.broken = True
            self.exited.notify_all()
        self._pids.put(None)

    def exit_code(self, pid):
        with self.exited:
            return self.codes.get(pid)

    def spawn(self, argv, env, stdout, stderr=None):
        """Fork a child running ``argv`` (the collector command's arguments) with exactly
        ``env``; its output is appended to the files ``stdout`` and ``stderr`` (the same
        file when ``stderr`` is None); its stdin is /dev/null."""
        request = {"argv": list(argv), "env": dict(env), "stdout": str(stdout),
                   "stderr": str(stderr or stdout)}
        with self._send:
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()
            pid = self._pids.get(timeout=60)
        if pid is None:
            raise RuntimeError("the fork server ended")
        return Child(self, pid)

    def close(self):
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --- the fork server's side ----------------------------------------------------------------

def _preload():
    """Import every module of the collector (what a server or a command would import)."""
    import collector

    for module in pkgutil.walk_packages(collector.__path__, "collector."):
        if module.name.startswith("collector.importer.") or ".migrations" in module.name:
            continue
        importlib.import_module(module.name)
    import serverproc  # noqa: F401


def _child(request, parent):
    """In the forked child: become the process the request describes; never returns."""
    code = 1
    try:
        os.setsid()
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ["COLLECTOR_TEST_PARENT"] = str(parent)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        os.dup2(os.open(request["stdout"], flags, 0o644), 1)
        os.dup2(os.open(request["stderr"], flags, 0o644) if request["stderr"] !=
                request["stdout"] else 1, 2)
        # New stream objects: the fork server's may hold a lock or buffered bytes.
        sys.stdin = open(0, closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        import tempfile

        tempfile.tempdir = None  # TMPDIR comes from the child's environment
        sys.argv = [str(HERE.parent / "serverproc.py"), *request["argv"]]
        import serverproc

        code = serverproc.child_main(request["argv"])
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:  # noqa: B036 (a child must end here, whatever happened)
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            import logging

            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code or 0)


def _serve():
    sys.path.insert(0, str(HERE.parent))
    import serverproc

    serverproc._die_with_the_test()
    _preload()
    assert threading.active_count() == 1, "the fork server must not run threads"
    out = os.fdopen(os.dup(1), "wb")
    requests = os.dup(0)
    pending = b""
    children = set()

    def say(message):
        out.write(json.dumps(message).encode() + b"\n")
        out.flush()

    def reap():
        for pid in list(children):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                children.discard(pid)
                say({"exited": pid, "code": os.waitstatus_to_exitcode(status)})

    me = os.getpid()
    while True:
        ready, _, _ = select.select([requests], [], [], 0.02 if children else 1)
        reap()
        if not ready:
            continue
        data = os.read(requests, 1 << 16)
        if not data:
            break
        pending += data
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            pid = os.fork()
            if pid == 0:
                out.close()
                os.close(requests)
                _child(json.loads(line), me)
            children.add(pid)
            say({"pid": pid})


if __name__ == "__main__":
    _serve()
