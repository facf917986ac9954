#!/usr/bin/env python3
"""Single-request uploads of big files, ours beside nginx, dd and the original app.

    .venv/bin/python bench/big_upload.py [--sizes 1GiB,3GiB] [--pairs 3]
                                         [--original PATH] [--concurrent 8]
                                         [--db sqlite|postgresql] [--no-nginx]

Issue 20's figures for the single-request upload, every reference measured in the same
run and on the same disk (a temporary directory under the repository's ``var/``):

* ours: ``curl -T FILE`` (raw body, ``PUT /api/v1/archives/{filename}``) and ``curl -F``
  (multipart, ``POST /api/v1/archives/``) with ``Upload-Token``, one request, timed until
  the 201; the receipt's sha256 must be the file's;
* ``dd if=FILE of=OUT bs=1M conv=fsync``: the disk;
* nginx writing the request body to a file: ``curl -T`` to a ``dav_methods PUT`` location
  (nginx spools the body to its ``client_body_temp_path``, on the same filesystem, and
  renames it into place), and "nginx + fsync": that time plus one ``fsync`` of the stored
  file right after the answer (timed apart and added);
* the original logs-collector (``--original``: its git directory or a checkout), installed
  from its pinned ``requirements.txt`` into a venv in the temporary directory, migrated, a
  ticket made in ``manage.py shell``, run under gunicorn with its own ``gunicorn.conf.py``
  on 127.0.0.1, uploaded to with ``curl -F`` exactly as its ``scripts/uploader.sh`` does.

Each size runs ``--pairs`` rounds; in a round the rows take turns (ours -T, dd, ours -F,
nginx, the original), each after a ``sync`` and a 2 s pause, so a busy spell hits ours and
its references alike. Printed: min / median / max MB/s per row, and per target the median
(min–max) of the per-round ratios. For every upload of ours also: the server's
``write_bytes`` (and ``cancelled_write_bytes``) from ``/proc/PID/io`` divided by the size
(dd's from its rusage), the block device's sectors written, and the server's ``VmHWM``
since a reset (``clear_refs``) just before the upload. Then ``--concurrent`` uploads of
1 GiB at once (``-T``, then ``-F``) and the server's peak RSS over them.

Everything is removed at the end, also on failure, Ctrl-C or SIGTERM: the servers (ours,
nginx, gunicorn) are stopped by their PID, the temporary directory is deleted and a
PostgreSQL database is dropped. Nothing of the original is kept.
"""

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

# The bench directory goes last on the path (see tus.py).
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

from upload_download import (  # noqa: E402 (after the path insert)
    MB,
    REPO,
    Harness,
    MiB,
    RssSampler,
    curl,
    disk_sectors_written,
    free_port,
    handle_signals,
    human,
    log,
    make_random_file,
    parse_size,
    print_server_warnings,
    proc_cpu,
    proc_status,
    reset_hwm,
    settle,
    sha256_of,
    stop_process,
)

GiB = 1024**3
TARGET_VS_NGINX_FSYNC = 0.8
TARGET_VS_ORIGINAL = 3.0
TARGET_WRITES = 1.0  # disk bytes written per uploaded byte
TARGET_WRITES_SLACK = 0.05  # SQLite/WAL, the receipt row: a few MB at most
TARGET_CONCURRENT_RSS_MB = 110
TARGET_RSS_SPREAD_MB = 10

NGINX_CONF = """\
{user}worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    client_max_body_size 0;
    client_body_buffer_size {buffer};
    server {{
        listen 127.0.0.1:{port};
        location /up/ {{
            root {prefix}/store;
            dav_methods PUT;
            create_full_put_path on;
        }}
    }}
}}
"""

# What the original's scripts/uploader.sh sends (its upload function), to our URL.
ORIGINAL_CURL = ("-X", "POST", "-H", "accept: application/json",
                 "-H", "Content-Type: multipart/form-data")

ORIGINAL_SHELL = """\
from account.models import User
from collector.models import Platform, Ticket
user = User.objects.create_user('bench', password=None)
platform = Platform.objects.create(name='bench', pretty_name='Bench')
ticket = Ticket.objects.create(number=1, platform=platform, user=user, attempts=1000)
print('TOKEN', ticket.token)
"""


def proc_io(pid):
    """/proc/PID/io as a dict of ints (``write_bytes``, ``cancelled_write_bytes``, …)."""
    try:
        with open(f"/proc/{pid}/io") as io:
            return {key: int(value) for key, value in
                    (line.split(":") for line in io if ":" in line)}
    except (OSError, ValueError):
        return {}


def io_delta(before, after, size):
    """(write_bytes, write − cancelled) per uploaded byte, or (None, None)."""
    if "write_bytes" not in before or "write_bytes" not in after:
        return None, None
    written = after["write_bytes"] - before["write_bytes"]
    cancelled = after["cancelled_write_bytes"] - before["cancelled_write_bytes"]
    return written / size, (written - cancelled) / size


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(child) for child in f.read().split()]
    except OSError:
        return []


def stop_group(proc, what):
    """Stop a process we started in its own session, then anything left in its group."""
    if proc is None:
        return
    stop_process(proc, what)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def fsync_path(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def wait_http(port, path, proc, what, timeout=60):
    import http.client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        with contextlib.suppress(OSError), contextlib.closing(conn):
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            return response.status
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer within {timeout} s")


def dd_run(source, target):
    """dd bs=1M conv=fsync: (seconds, write_bytes per byte from its rusage)."""
    started = time.perf_counter()
    proc = subprocess.Popen(["dd", f"if={source}", f"of={target}", "bs=1M", "conv=fsync"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if proc.returncode:
        raise RuntimeError(f"dd failed: {err}")
    size = os.path.getsize(target)
    os.unlink(target)
    # Linux fills ru_oublock from the task's write_bytes, in 512-byte units
    return seconds, usage.ru_oublock * 512 / size


# --- the references ----------------------------------------------------------------------

class Nginx:
    """nginx with its own prefix and config in the temp dir, on a free 127.0.0.1 port."""

    def __init__(self, root, buffer):
        self.prefix = root / "nginx"
        self.buffer = buffer
        self.proc = None

    def start(self):
        for sub in ("body", "store", "logs"):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        user = ""
        if os.geteuid() == 0:  # workers would otherwise run as nobody, unable to write here
            user = "user root root;\n"
        conf = self.prefix / "nginx.conf"
        conf.write_text(NGINX_CONF.format(user=user, prefix=self.prefix, port=self.port,
                                          buffer=self.buffer))
        self._log = open(self.prefix / "stderr.log", "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            ["nginx", "-p", str(self.prefix), "-c", str(conf), "-e", str(self.prefix / "error.log"),
             "-g", "daemon off;"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        wait_http(self.port, "/", self.proc, "nginx")
        log(f"nginx pid {self.proc.pid} on 127.0.0.1:{self.port}")

    def stop(self):
        proc, self.proc = self.proc, None
        stop_group(proc, "nginx")
        if proc is not None:
            self._log.close()

    def worker(self):
        kids = children(self.proc.pid)
        return kids[0] if kids else None

    def upload(self, path, size, expected):
        stored = self.prefix / "store" / "up" / path.name
        worker = self.worker()
        before = proc_io(worker) if worker else {}
        code, up, _, seconds = curl("-o", "/dev/null", "-T", str(path),
                                    f"http://127.0.0.1:{self.port}/up/{path.name}")
        after = proc_io(worker) if worker else {}
        if code not in (201, 204) or up != size:
            raise RuntimeError(f"nginx PUT answered {code} after {up} bytes")
        started = time.perf_counter()
        fsync_path(stored)
        fsync_s = time.perf_counter() - started
        if stored.stat().st_size != size or sha256_of(stored) != expected:
            raise RuntimeError("nginx stored a different file")
        stored.unlink()
        writes, net = io_delta(before, after, size)
        return {"seconds": seconds, "fsync_s": fsync_s, "writes": writes, "net_writes": net}


class Original:
    """The original logs-collector (Django + gunicorn) from its sources, in a temp dir."""

    def __init__(self, source, rev, root):
        self.source, self.rev = Path(source).resolve(), rev
        self.dir = root / "original"
        self.src = self.dir / "src"
        self.data = self.dir / "data"
        self.proc = None
        self.commit = None

    def _git(self, *args, **kwargs):
        git_dir = self.source / ".git" if (self.source / ".git").exists() else self.source
        return subprocess.run(["git", f"--git-dir={git_dir}", *args], check=True, **kwargs)

    def install(self):
        self.src.mkdir(parents=True)
        (self.dir / "tmp").mkdir()
        if (self.source / "logs_collector" / "manage.py").exists() and self.rev == "WORKTREE":
            shutil.copytree(self.source, self.src, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns(".git", "venv", ".venv", "data"))
            self.commit = "working tree"
        else:
            self.commit = self._git("rev-parse", "--short", self.rev, capture_output=True,
                                    text=True).stdout.strip()
            archive = self._git("archive", self.rev, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(self.src)], input=archive, check=True)
        if not (self.src / "logs_collector" / "manage.py").exists():
            raise RuntimeError(f"{self.source} ({self.rev}) has no logs_collector/manage.py: "
                               "not the original logs-collector")
        log(f"original {self.commit}: venv + pip install -r requirements.txt in {self.dir}")
        python = shutil.which("python3") or sys.executable
        subprocess.run([python, "-m", "venv", str(self.dir / "venv")], check=True)
        result = subprocess.run(
            [str(self.dir / "venv" / "bin" / "pip"), "install", "-q",
             "--disable-pip-version-check", "-r", str(self.src / "requirements.txt")],
            capture_output=True, text=True, timeout=1200, check=False)
        if result.returncode:
            raise RuntimeError(f"pip install of the original's requirements failed:\n"
                               f"{result.stderr[-3000:]}")
        self.port = free_port()
        self.manage("migrate", "--no-input")
        out = self.manage("shell", "-c", ORIGINAL_SHELL)
        self.token = next(line.split()[1] for line in out.splitlines()
                          if line.startswith("TOKEN "))

    def env(self):
        keep = ("PATH", "HOME", "LANG", "LC_ALL")
        env = {k: v for k, v in os.environ.items() if k in keep}
        env.update({
            "DATA_DIR": str(self.data),
            "SECRET_KEY": "bench-" + os.urandom(8).hex(),
            "DEBUG": "False",
            "ALLOWED_HOSTS": "127.0.0.1",
            # Django spools uploads to the temp dir: on the same disk, as in its container
            "TMPDIR": str(self.dir / "tmp"),
            "GUNICORN_BIND": f"127.0.0.1:{self.port}",
            "PYTHONUNBUFFERED": "1",
        })
        return env

    def manage(self, *args):
        result = subprocess.run([str(self.dir / "venv" / "bin" / "python"), "manage.py", *args],
                                cwd=self.src / "logs_collector", env=self.env(),
                                capture_output=True, text=True, timeout=600, check=False)
        if result.returncode:
            raise RuntimeError(f"original manage.py {args[0]} failed:\n{result.stderr[-3000:]}")
        return result.stdout

    def start(self):
        # as its scripts/entrypoint.sh: gunicorn with the gunicorn.conf.py of its source dir
        self._log = open(self.dir / "gunicorn.log", "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [str(self.dir / "venv" / "bin" / "gunicorn"), "logs_collector.wsgi:application"],
            cwd=self.src / "logs_collector", env=self.env(), stdout=self._log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        wait_http(self.port, "/api/v1/check/health/", self.proc, "gunicorn")
        log(f"original (gunicorn) pid {self.proc.pid} on 127.0.0.1:{self.port}")

    def stop(self):
        proc, self.proc = self.proc, None
        stop_group(proc, "original (gunicorn)")
        if proc is not None:
            self._log.close()

    def upload(self, path, size, expected):
        response = self.dir / "upload.json"
        code, up, _, seconds = curl(
            "-o", str(response), *ORIGINAL_CURL, "-H", f"Upload-Token: {self.token} ",
            "-F", f"file=@{path}", f"http://127.0.0.1:{self.port}/api/v1/archives/")
        if code != 201:
            raise RuntimeError(f"the original answered {code}: {response.read_text()[:300]}")
        stored = list((self.data / "archives").rglob("*"))
        files = [p for p in stored if p.is_file()]
        if len(files) != 1 or files[0].stat().st_size != size or \
                sha256_of(files[0]) != expected:
            raise RuntimeError(f"the original stored something else: {files}")
        files[0].unlink()
        return {"seconds": seconds}


# --- ours --------------------------------------------------------------------------------

class Ours:
    def __init__(self, harness, token):
        self.harness, self.token = harness, token

    def upload(self, path, size, expected, mode, name=None):
        """One upload with curl (-T or -F): seconds and the server's writes, RSS, CPU."""
        harness, pid = self.harness, self.harness.proc.pid
        name = name or path.name
        response = harness.dir / f"upload-{name}.json"
        if mode == "T":
            args = ["-T", str(path), f"{harness.base}/api/v1/archives/{name}"]
        else:
            args = ["-F", f"file=@{path};filename={name}", f"{harness.base}/api/v1/archives/"]
        hwm_reset = reset_hwm(pid)
        io_before, cpu = proc_io(pid), proc_cpu(pid)
        code, _, _, seconds = curl("-o", str(response), "-H", f"Upload-Token: {self.token}",
                                   *args)
        run = {"seconds": seconds, "cpu": proc_cpu(pid) - cpu,
               "hwm": proc_status(pid, "VmHWM") or 0, "hwm_reset": hwm_reset}
        body = response.read_text()
        if code != 201:
            raise RuntimeError(f"curl -{mode} answered {code}: {body[:500]}")
        archive = json.loads(body)
        if archive["sha256"] != expected or archive["size"] != size:
            raise RuntimeError(f"curl -{mode} stored a different file: {archive}")
        run["md5_s"] = self.settle_archive(archive)
        # read after the archive is deleted: by then the server has closed its spool, so
        # what it cancelled of it is counted (the delete and the md5 write only a few kB)
        run["writes"], run["net_writes"] = io_delta(io_before, proc_io(pid), size)
        return run

    def settle_archive(self, archive, timeout=120):
        """Wait until the archive's md5 is filled in (it may be computed after the answer),
        so that work does not overlap the next run; then delete the archive. Returns how
        long after the answer the md5 was there (0 when it came with the receipt)."""
        started = time.perf_counter()
        waited = 0.0
        if archive.get("md5") is None:
            deadline = time.monotonic() + timeout
            while True:
                current = self.harness.api("GET", f"/api/v1/archives/{archive['id']}/")
                if current.get("md5") is not None:
                    break
                if time.monotonic() > deadline:
                    log(f"WARNING: the md5 of archive {archive['id']} is still null after "
                        f"{timeout} s; going on")
                    break
                time.sleep(0.05)
            waited = time.perf_counter() - started
        self.harness.api("DELETE", f"/api/v1/archives/{archive['id']}/", expect=(204,))
        return waited


# --- the measurements --------------------------------------------------------------------

def loadavg():
    return os.getloadavg()[0]


class Bench:
    def __init__(self, args, harness, token, nginx, original):
        self.args, self.harness = args, harness
        self.ours = Ours(harness, token)
        self.nginx, self.original = nginx, original

    def run_size(self, size):
        path = self.harness.dir / f"random-{human(size)}.bin"
        log(f"generating {human(size)} of random bytes in {path}")
        make_random_file(path, size)
        expected = sha256_of(path)
        rows = [("ours -T", lambda: self.ours.upload(path, size, expected, "T")),
                ("dd", lambda: self.dd(path, size))]
        rows.append(("ours -F", lambda: self.ours.upload(path, size, expected, "F")))
        if self.nginx:
            rows.append(("nginx", lambda: self.nginx.upload(path, size, expected)))
        if self.original:
            rows.append(("original", lambda: self.original.upload(path, size, expected)))
        runs = {name: [] for name, _ in rows}
        try:
            pid = self.harness.start_server()
            idle = proc_status(pid, "VmRSS") or 0
            self.warm_up()
            for index in range(self.args.pairs):
                for name, fn in rows:
                    settle()
                    sectors = disk_sectors_written(self.harness.dir)
                    run = fn()
                    after = disk_sectors_written(self.harness.dir)
                    if sectors is not None:
                        run["device"] = (after - sectors) * 512 / size
                    run["rate"] = size / run["seconds"] / MB
                    runs[name].append(run)
                    extra = ""
                    if "fsync_s" in run:
                        extra = f", fsync after {run['fsync_s']:.2f} s"
                    if run.get("net_writes") is not None:
                        extra += f", writes {run['writes']:.2f}x (net {run['net_writes']:.2f}x)"
                    if "hwm" in run:
                        extra += f", VmHWM {run['hwm'] / MB:.0f} MB, CPU {run['cpu']:.1f} s"
                    if run.get("md5_s"):
                        extra += f", md5 ready {run['md5_s']:.2f} s after the answer"
                    log(f"{human(size)} round {index + 1} {name}: {run['rate']:.0f} MB/s in "
                        f"{run['seconds']:.2f} s{extra}")
        finally:
            self.harness.stop_server()
            path.unlink(missing_ok=True)
        return {"size": size, "runs": runs, "idle": idle}

    def warm_up(self):
        """One small upload through every server and mode, untimed: the first request of
        a fresh process (imports, connections, a gunicorn worker's first) is not measured."""
        path = self.harness.dir / "warm-up.bin"
        make_random_file(path, MiB)
        expected = sha256_of(path)
        try:
            for mode in ("T", "F"):
                self.ours.upload(path, MiB, expected, mode)
            if self.nginx:
                self.nginx.upload(path, MiB, expected)
            if self.original:
                for _ in range(2):  # its two workers, as far as gunicorn spreads them
                    self.original.upload(path, MiB, expected)
        finally:
            path.unlink(missing_ok=True)

    def dd(self, path, size):
        seconds, writes = dd_run(path, self.harness.dir / "dd.out")
        return {"seconds": seconds, "writes": writes, "net_writes": writes}

    def concurrent(self, count, mode):
        """``count`` uploads of 1 GiB at once: the server's peak RSS and the total rate."""
        size = GiB
        path = self.harness.dir / "random-concurrent.bin"
        log(f"generating 1GiB of random bytes for {count} concurrent uploads (-{mode})")
        make_random_file(path, size)
        expected = sha256_of(path)
        try:
            pid = self.harness.start_server()
            idle = proc_status(pid, "VmRSS") or 0
            settle()
            hwm_reset = reset_hwm(pid)
            sampler = RssSampler(pid)
            sampler.start()
            procs = []
            started = time.perf_counter()
            try:
                for index in range(count):
                    name = f"concurrent-{index}.bin"
                    out = self.harness.dir / f"concurrent-{index}.json"
                    target = (["-T", str(path), f"{self.harness.base}/api/v1/archives/{name}"]
                              if mode == "T" else
                              ["-F", f"file=@{path};filename={name}",
                               f"{self.harness.base}/api/v1/archives/"])
                    procs.append((out, subprocess.Popen(
                        ["curl", "-sS", "-o", str(out), "-w", "%{http_code}",
                         "-H", f"Upload-Token: {self.ours.token}", *target],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
                codes = []
                for out, proc in procs:
                    stdout, stderr = proc.communicate(timeout=3600)
                    codes.append((out, proc.returncode, stdout.strip(), stderr))
                seconds = time.perf_counter() - started
            finally:
                for _, proc in procs:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
                sampler.stop()
            hwm = proc_status(pid, "VmHWM") or 0
            for out, returncode, code, stderr in codes:
                if returncode or code != "201":
                    raise RuntimeError(f"concurrent upload: curl {returncode}, HTTP {code}: "
                                       f"{stderr} {out.read_text()[:300]}")
                archive = json.loads(out.read_text())
                if archive["sha256"] != expected or archive["size"] != size:
                    raise RuntimeError(f"concurrent upload stored a different file: {archive}")
                self.ours.settle_archive(archive)
        finally:
            self.harness.stop_server()
            path.unlink(missing_ok=True)
        return {"mode": mode, "count": count, "hwm": hwm, "idle": idle, "hwm_reset": hwm_reset,
                "sampled": sampler.peaks.get("idle", 0),
                "rate": count * size / seconds / MB, "seconds": seconds}


# --- the report --------------------------------------------------------------------------

def spread(values, fmt="{:.0f}"):
    return " / ".join(fmt.format(v) for v in (min(values), statistics.median(values),
                                                max(values)))


def pair_ratios(ours, ref, key=lambda run: run["seconds"]):
    """Per-round ratio of rates (= ref seconds ÷ ours seconds): median, min, max."""
    ratios = [key(r) / o["seconds"] for o, r in zip(ours, ref, strict=True)]
    return statistics.median(ratios), min(ratios), max(ratios)


def med(values):
    return f"{statistics.median(values):.2f}×" if values else "n/a"


def verdict(ok):
    return "met" if ok else "**missed**"


def fmt_ratio(ratio):
    median, low, high = ratio
    return f"{median:.2f}× ({low:.2f}–{high:.2f})"


def git_describe():
    result = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                            capture_output=True, text=True, check=False)
    return result.stdout.strip() or "?"


def print_report(results, concurrent, info):
    print()
    print(f"Single-request uploads — ours {git_describe()}, db={info['db']}, "
          f"{info['curl']}, {os.cpu_count()} CPUs, {info['pairs']} interleaved rounds; "
          f"1-min load {info['load_start']:.2f} at the start, {info['load_end']:.2f} at the end")
    if info.get("original"):
        print(f"original: logs-collector {info['original']} (Django, gunicorn as its "
              f"gunicorn.conf.py), curl -F as its uploader.sh")
    else:
        print("original: skipped (pass --original PATH: a git dir or checkout of "
              "MOIS3Y/logs-collector)")
    if not info.get("nginx"):
        print("nginx: skipped (--no-nginx)")
    print("MB = 10^6 bytes; ratio = median (min–max) of the per-round ratios of the rates")
    print()
    print("| size | row | MB/s min / median / max | s (median) | ratio | target | |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        runs, size = r["runs"], human(r["size"])
        nginx_fsync = None
        if "nginx" in runs:
            nginx_fsync = [{"seconds": n["seconds"] + n["fsync_s"]} for n in runs["nginx"]]

        def row(label, measured, nbytes=r["size"]):
            nonlocal size
            rates = [nbytes / m["seconds"] / MB for m in measured]
            seconds = statistics.median(m["seconds"] for m in measured)
            print(f"| {size} | {label} | {spread(rates)} | {seconds:.2f} | | | |")
            size = ""

        row("dd bs=1M conv=fsync", runs["dd"])
        if "nginx" in runs:
            row("nginx PUT to a file", runs["nginx"])
            fsync = statistics.median(n["fsync_s"] for n in runs["nginx"])
            row(f"nginx + fsync (fsync {fsync:.2f} s)", nginx_fsync)
        if "original" in runs:
            row("original, curl -F (gunicorn)", runs["original"])
        for mode in ("T", "F"):
            ours = runs[f"ours -{mode}"]
            row(f"**ours curl -{mode}**", ours)
            if nginx_fsync:
                ratio = pair_ratios(ours, nginx_fsync)
                row_ratio(f"ours -{mode} ÷ nginx + fsync", ratio, TARGET_VS_NGINX_FSYNC)
                row_ratio(f"ours -{mode} ÷ nginx", pair_ratios(ours, runs["nginx"]))
            if "original" in runs:
                row_ratio(f"ours -{mode} ÷ original", pair_ratios(ours, runs["original"]),
                          TARGET_VS_ORIGINAL)
            row_ratio(f"ours -{mode} ÷ dd", pair_ratios(ours, runs["dd"]))
    print()
    print("Disk bytes written per uploaded byte: the server's write_bytes from /proc/PID/io "
          "(net = less cancelled_write_bytes), dd's from its rusage, nginx's worker's; "
          "device = sectors written to the block device by every process during the row "
          "÷ size. Medians.")
    print()
    print("| size | row | write_bytes ÷ size | net ÷ size | device ÷ size | target | |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        runs, size = r["runs"], human(r["size"])
        for name in ("dd", "nginx", "ours -T", "ours -F"):
            if name not in runs:
                continue
            measured = runs[name]
            writes = [m["writes"] for m in measured if m.get("writes") is not None]
            nets = [m["net_writes"] for m in measured if m.get("net_writes") is not None]
            devices = [m["device"] for m in measured if m.get("device") is not None]
            target = result = ""
            if name.startswith("ours") and nets:
                target = f"{TARGET_WRITES:.1f}×"
                result = verdict(statistics.median(nets) <= TARGET_WRITES + TARGET_WRITES_SLACK)
            print(f"| {size} | {name} | {med(writes)} | {med(nets)} | {med(devices)} | "
                  f"{target} | {result} |")
            size = ""
    print()
    print("Server peak RSS (VmHWM since a reset just before each upload; max over the runs)")
    resets = [m["hwm_reset"] for r in results for m in r["runs"]["ours -T"] + r["runs"]["ours -F"]]
    if not all(resets + [c["hwm_reset"] for c in concurrent]):
        print("NOTE: /proc/PID/clear_refs refused the reset: peaks are since the server started")
    print()
    print("| upload | peak RSS | idle RSS before | target | |")
    print("|---|---|---|---|---|")
    peaks = {}
    for r in results:
        for mode in ("T", "F"):
            peak = max(m["hwm"] for m in r["runs"][f"ours -{mode}"])
            peaks.setdefault(mode, []).append(peak)
            print(f"| {human(r['size'])} curl -{mode} | {peak / MB:.0f} MB | "
                  f"{r['idle'] / MB:.0f} MB | | |")
    if len(results) > 1:
        for mode, values in peaks.items():
            growth = (max(values) - min(values)) / MB
            print(f"| spread across sizes, -{mode} | {growth:.0f} MB | | flat "
                  f"(< {TARGET_RSS_SPREAD_MB} MB) | {verdict(growth < TARGET_RSS_SPREAD_MB)} |")
    for c in concurrent:
        hwm = c["hwm"] / MB
        print(f"| {c['count']} × 1GiB at once, curl -{c['mode']} ({c['rate']:.0f} MB/s in all) "
              f"| {hwm:.0f} MB | {c['idle'] / MB:.0f} MB | ≤ {TARGET_CONCURRENT_RSS_MB} MB | "
              f"{verdict(hwm <= TARGET_CONCURRENT_RSS_MB)} |")


def row_ratio(label, ratio, target=None):
    print(f"| | {label} | | | {fmt_ratio(ratio)} | "
          + (f"≥ {target:.1f}× | {verdict(ratio[0] >= target)} |" if target else "| |"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1GiB,3GiB", help="comma list (default 1GiB,3GiB)")
    parser.add_argument("--pairs", type=int, default=3,
                        help="interleaved rounds per size (default 3)")
    parser.add_argument("--original", metavar="PATH",
                        help="git dir or checkout of MOIS3Y/logs-collector (row skipped "
                             "without it)")
    parser.add_argument("--original-rev", default="HEAD",
                        help="revision to archive from --original (default HEAD; WORKTREE "
                             "copies a checkout as it is)")
    parser.add_argument("--concurrent", type=int, default=8,
                        help="uploads of 1 GiB at once for the peak RSS (0 skips; default 8)")
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--no-nginx", action="store_true", help="skip the nginx reference")
    parser.add_argument("--nginx-body-buffer", default="1m",
                        help="nginx client_body_buffer_size: its write size (default 1m)")
    args = parser.parse_args(argv)
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    if args.pairs < 1:
        raise SystemExit("--pairs must be at least 1")
    tools = ["curl", "dd", "git", "tar"] + ([] if args.no_nginx else ["nginx"])
    for tool in tools:
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is required (apt-get install -y {tool})")
    if args.original and not Path(args.original).exists():
        raise SystemExit(f"--original {args.original}: no such directory")
    max_size = max(sizes)
    # the file + our spool + our stored copy, or + the original's temp file and its copy
    needed = 4 * max_size + 1 * GiB
    if args.concurrent:
        needed = max(needed, (2 * args.concurrent + 1) * GiB + GiB)
    (REPO / "var").mkdir(exist_ok=True)
    free = shutil.disk_usage(REPO / "var").free
    if free < needed:
        raise SystemExit(f"need {needed / GiB:.1f} GiB free next to the repo, "
                         f"have {free / GiB:.1f} GiB")
    env = {"UPLOAD_MAX_SIZE": str(max(max_size + MiB, 4 * GiB)),
           "STORAGE_RESERVE": "256MiB"}
    version = subprocess.run(["curl", "--version"], capture_output=True, text=True,
                             check=False).stdout.split()
    info = {"db": args.db, "pairs": args.pairs, "load_start": loadavg(),
            "curl": f"curl {version[1] if len(version) > 1 else '?'}",
            "nginx": not args.no_nginx}
    log(f"1-minute load average at the start: {info['load_start']:.2f}")
    results, concurrent = [], []
    with handle_signals(), Harness(args.db, env=env, label="bigup") as harness, \
            contextlib.ExitStack() as stack:
        harness.setup()
        harness.start_server()
        ticket = harness.create_ticket(number=1, attempts=1000)
        harness.stop_server()
        nginx = original = None
        if not args.no_nginx:
            nginx = Nginx(harness.dir, args.nginx_body_buffer)
            stack.callback(nginx.stop)
            nginx.start()
        if args.original:
            original = Original(args.original, args.original_rev, harness.dir)
            stack.callback(original.stop)
            original.install()
            original.start()
            info["original"] = original.commit
        bench = Bench(args, harness, ticket["token"], nginx, original)
        for size in sizes:
            results.append(bench.run_size(size))
        stack.close()  # the references are done: stop them before the concurrent runs
        if args.concurrent:
            for mode in ("T", "F"):
                concurrent.append(bench.concurrent(args.concurrent, mode))
        info["load_end"] = loadavg()
        log(f"1-minute load average at the end: {info['load_end']:.2f}")
        print_report(results, concurrent, info)
        print_server_warnings(harness)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted; cleaned up")
        sys.exit(130)
