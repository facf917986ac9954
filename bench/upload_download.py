#!/usr/bin/env python3
"""Upload and download throughput of one big archive, next to raw references.

    .venv/bin/python bench/upload_download.py [--size 1GiB | --sizes 1GiB,3GiB]
                                              [--db sqlite|postgresql] [--repeat N]

For each size, against a real ``collector serve`` (waitress) on 127.0.0.1:

* reference 1: ``dd bs=1M conv=fsync`` of the file to the same disk (dd and the upload take
  turns, each after a ``sync`` and a short pause);
* upload: ``curl -F file=@FILE`` with ``Upload-Token`` to ``POST /api/v1/archives/``
  (one request, what customers' scripts send); the returned sha256 must match;
* download: ``curl -o /dev/null`` of ``GET /api/v1/archives/{id}/download`` (bearer token);
* reference 2: the same curl against a minimal in-process HTTP server that answers with
  ``os.sendfile`` of the same file: the loopback ceiling (and, for information, the same
  server sending 4 MiB ``read`` blocks, which some virtualised kernels do faster);
* the server's peak RSS (``VmHWM``, also reset just after startup) and ``VmRSS`` sampled
  every 20 ms.

Everything lives in a temporary DATA_DIR under the repository's ``var/`` (same disk as
the repo, gitignored) and is removed at the end, also on failure or Ctrl-C. The server is
a fresh process per size, so its peak RSS can be compared between sizes.

This module also holds the harness ``bench/api.py`` uses (``Harness``).
"""

import argparse
import contextlib
import hashlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import ClassVar

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
COLLECTOR = BIN / "collector"
MB = 1_000_000  # MB/s as dd prints them
MiB = 1024 * 1024
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1/postgres"

TARGET_UPLOAD = 0.60  # of dd
TARGET_DOWNLOAD = 0.70  # of the sendfile loopback ceiling
TARGET_RSS_MB = 80


def log(message):
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def parse_size(text):
    from collector.settings import as_size

    return as_size(text)


def human(size):
    for unit, factor in (("GiB", 1024**3), ("MiB", MiB), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _sigterm(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


# --- /proc sampling ----------------------------------------------------------------------

def proc_status(pid, field):
    """A ``kB`` field of /proc/<pid>/status in bytes (None when the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def reset_hwm(pid):
    """Reset VmHWM to the current RSS (Linux: ``5`` into clear_refs); False if refused."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def proc_cpu(pid):
    """User + system CPU seconds of a process so far."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def disk_sectors_written(path):
    """Sectors (512 B) written so far to the block device holding ``path`` (or None)."""
    st = os.stat(path)
    try:
        with open(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}/stat") as f:
            return int(f.read().split()[6])
    except (OSError, IndexError, ValueError):
        return None


class RssSampler(threading.Thread):
    """Samples VmRSS every ``interval``; ``phase(name)`` starts attributing samples.

    It also notes when a staging file (``DATA_DIR/tmp/*.part``) first appears: that is
    when the app starts reading the body, i.e. when waitress has finished receiving it.
    """

    def __init__(self, pid, staging=None, interval=0.02):
        super().__init__(daemon=True, name="rss-sampler")
        self.pid, self.interval, self.staging = pid, interval, staging
        self.current = "idle"
        self.peaks = {}
        self.staged_at = None
        self.stopping = threading.Event()

    def phase(self, name):
        self.current = name
        self.staged_at = None

    def run(self):
        while not self.stopping.is_set():
            rss = proc_status(self.pid, "VmRSS")
            if rss is None:
                return
            self.peaks[self.current] = max(self.peaks.get(self.current, 0), rss)
            if self.staging is not None and self.staged_at is None and \
                    any(self.staging.glob("*.part")):
                self.staged_at = time.perf_counter()
            self.stopping.wait(self.interval)

    def stop(self):
        self.stopping.set()
        self.join(2)


def print_server_warnings(harness, last=20):
    """The server log's last warning and error lines (and tracebacks), if any."""
    warnings = [line for line in harness.server_log().splitlines()
                if "WARN" in line or "ERROR" in line or "Traceback" in line]
    if warnings:
        print("\nserver log warnings/errors:")
        print("\n".join(warnings[-last:]))


def stop_process(proc, what=None):
    """SIGTERM, up to 10 s, then SIGKILL; logs "stopped WHAT pid N" when ``what``."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    if what:
        log(f"stopped {what} pid {proc.pid}")


# --- the server under test ---------------------------------------------------------------

class Harness:
    """A temp DATA_DIR, a migrated database, an admin with a bearer token, a server."""

    # The server command; a profiling or experiment wrapper may replace it.
    server_command: ClassVar[list[str]] = [str(COLLECTOR)]

    def __init__(self, db="sqlite", ini=REPO / "development.ini", env=None, label="bench"):
        self.db = db
        self.ini = Path(ini)
        self.extra_env = dict(env or {})
        self.label = label
        self.dir = None
        self.proc = None
        self.port = None
        self.pg_db = None
        self.token = None
        self.log_path = None

    # context manager: everything is undone in __exit__, whatever happened
    def __enter__(self):
        (REPO / "var").mkdir(exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix=f"bench-{self.label}-", dir=REPO / "var"))
        self.data_dir = self.dir / "data"
        self.data_dir.mkdir()
        self.log_path = self.dir / "server.log"
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        try:
            self.stop_server()
        finally:
            try:
                if self.pg_db:
                    self._drop_pg_db()
            finally:
                if self.dir and self.dir.exists():
                    shutil.rmtree(self.dir, ignore_errors=True)
                    log(f"removed {self.dir}")

    # --- configuration

    @property
    def db_url(self):
        if self.db == "sqlite":
            return f"sqlite:///{self.data_dir / 'db.sqlite3'}"
        return f"postgresql://postgres@127.0.0.1/{self.pg_db}"

    def env(self):
        from collector.settings import ENV_OVERRIDES

        env = {k: v for k, v in os.environ.items()
               if k not in {variable for _, variable, _, _ in ENV_OVERRIDES}}
        env.update({
            "DATA_DIR": str(self.data_dir),
            "DB_URL": self.db_url,
            "DEBUG": "false",
            "ALLOWED_HOSTS": "127.0.0.1",
            "SECRET_KEY": self.secret_key,
            "WAITRESS_LISTEN": f"127.0.0.1:{self.port or 0}",
            "TMPDIR": str(self.data_dir / "tmp"),
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self.extra_env)
        return env

    def collector(self, *args, stdin=None):
        result = subprocess.run([str(COLLECTOR), "-c", str(self.ini), *args], check=False,
                                env=self.env(),
                                input=stdin, capture_output=True, text=True, timeout=300)
        if result.returncode:
            raise RuntimeError(f"collector {' '.join(args)} failed:\n{result.stderr}")
        return result.stdout

    def _create_pg_db(self):
        import psycopg

        self.pg_db = f"collector_bench_{os.getpid()}_{secrets.token_hex(3)}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.pg_db}"')
        log(f"created PostgreSQL database {self.pg_db}")

    def _drop_pg_db(self):
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.pg_db}" WITH (FORCE)')
        log(f"dropped PostgreSQL database {self.pg_db}")
        self.pg_db = None

    def setup(self):
        """Migrate, create the admin and a bearer token (mfa, minted at the console)."""
        self.secret_key = secrets.token_urlsafe(32)
        if self.db == "postgresql":
            self._create_pg_db()
        (self.data_dir / "tmp").mkdir(exist_ok=True)
        self.collector("migrate")
        password = secrets.token_urlsafe(16)
        self.collector("create-user", "admin", "--admin", "--password-stdin",
                       stdin=password + "\n")
        self.token = self.collector("create-token", "admin").strip().splitlines()[-1]
        return self

    def engine(self):
        from collector.db import make_engine
        from collector.settings import as_db_url

        return make_engine(as_db_url(self.db_url))

    # --- the server process

    def start_server(self):
        self.port = free_port()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop_server)
        self.proc = subprocess.Popen(
            [*self.server_command, "-c", str(self.ini), "serve"], env=self.env(),
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)  # Ctrl-C reaches us; we stop it by PID in close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n"
                                   + self.server_log()[-3000:])
            try:
                status, _, _ = self.request("GET", "/api/v1/check/health/", timeout=2)
                if status == 200:
                    log(f"server pid {self.proc.pid} on 127.0.0.1:{self.port} ({self.db})")
                    return self.proc.pid
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not answer /api/v1/check/health/ within 60 s")

    def stop_server(self):
        proc, self.proc = self.proc, None
        stop_process(proc, "server")
        log_file, self._log = getattr(self, "_log", None), None
        if log_file is not None:  # never started, or already stopped
            log_file.close()

    def server_log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    # --- small JSON requests

    def request(self, method, path, body=None, headers=None, timeout=30):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            headers = dict(headers or {})
            if body is not None and not isinstance(body, bytes):
                body = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            return response.status, dict(response.getheaders()), data
        finally:
            conn.close()

    def api(self, method, path, body=None, expect=(200, 201)):
        status, _, data = self.request(method, path, body,
                                       {"Authorization": f"Bearer {self.token}"})
        if status not in expect:
            raise RuntimeError(f"{method} {path}: {status} {data[:500]!r}")
        return json.loads(data) if data else None

    def create_ticket(self, number=1, attempts=1000, platform="bench"):
        status, _, _ = self.request("GET", f"/api/v1/platforms/{platform}/",
                                    headers={"Authorization": f"Bearer {self.token}"})
        if status == 404:
            self.api("POST", "/api/v1/platforms/", {"name": platform, "pretty_name": "Bench"})
        return self.api("POST", "/api/v1/tickets/",
                        {"number": number, "platform": platform, "attempts": attempts})


@contextlib.contextmanager
def handle_signals():
    """SIGTERM and SIGINT (even if inherited as ignored) unwind through the cleanups."""
    previous = {sig: signal.signal(sig, handler) for sig, handler in
                ((signal.SIGTERM, _sigterm), (signal.SIGINT, signal.default_int_handler))}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --- the references ----------------------------------------------------------------------

def make_random_file(path, size):
    block = 8 * MiB
    with open(path, "wb") as out:
        remaining = size
        while remaining:
            n = min(block, remaining)
            out.write(os.urandom(n))
            remaining -= n
        out.flush()
        os.fsync(out.fileno())


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(4 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


def settle(seconds=2.0):
    """Let the kernel (and a virtual disk's host) finish writing back before the next run."""
    os.sync()
    time.sleep(seconds)


def dd_reference(source, target):
    started = time.perf_counter()
    result = subprocess.run(["dd", f"if={source}", f"of={target}", "bs=1M", "conv=fsync"],
                            check=False, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode:
        raise RuntimeError(f"dd failed: {result.stderr}")
    size = os.path.getsize(target)
    os.unlink(target)
    return size / elapsed / MB, elapsed


class SendfileServer(threading.Thread):
    """Answers GETs with headers and ``os.sendfile`` of one file: the loopback ceiling.

    ``mode="send"`` reads 4 MiB blocks and ``sendall``s them instead (what waitress does):
    on some virtualised kernels that beats sendfile, so it is shown as a second reference.
    """

    def __init__(self, path, mode="sendfile"):
        super().__init__(daemon=True, name=f"{mode}-server")
        self.path, self.mode = path, mode
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()

    def run(self):
        size = os.path.getsize(self.path)
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn, open(self.path, "rb") as handle:
                conn.settimeout(60)
                request = b""
                while b"\r\n\r\n" not in request:
                    data = conn.recv(65536)
                    if not data:
                        break
                    request += data
                conn.settimeout(None)  # os.sendfile wants a blocking socket
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                             b"Content-Length: %d\r\nConnection: close\r\n\r\n" % size)
                offset = 0
                while offset < size:
                    if self.mode == "send":
                        block = handle.read(4 * MiB)
                        if not block:
                            break
                        conn.sendall(block)
                        offset += len(block)
                        continue
                    sent = os.sendfile(conn.fileno(), handle.fileno(), offset, size - offset)
                    if sent == 0:
                        break
                    offset += sent

    def stop(self):
        self.stopping.set()
        self.sock.close()
        self.join(2)


# --- the client: curl, as customers use it -----------------------------------------------

def curl(*args, timeout=3600):
    """Run curl; return (http_code, size_up, size_down, seconds by our clock)."""
    command = ["curl", "-sS", "-w", "%{http_code} %{size_upload} %{size_download}", *args]
    started = time.perf_counter()
    result = subprocess.run(command, check=False, capture_output=True, text=True,
                            timeout=timeout)
    elapsed = time.perf_counter() - started
    if result.returncode:
        raise RuntimeError(f"curl failed ({result.returncode}): {result.stderr}")
    code, up, down = result.stdout.split()[-3:]
    return int(code), int(up), int(down), elapsed


def curl_download(url, headers=()):
    args = []
    for header in headers:
        args += ["-H", header]
    return curl("-o", "/dev/null", *args, url)


# --- one size ----------------------------------------------------------------------------

def run_size(harness, size, repeat, ticket_token):
    path = harness.dir / f"random-{human(size)}.bin"
    log(f"generating {human(size)} of random bytes in {path}")
    make_random_file(path, size)
    expected = sha256_of(path)
    result = {"size": size}
    try:
        settle()
        pid = harness.start_server()
        result["hwm_start"] = proc_status(pid, "VmHWM") or 0
        result["rss_idle"] = proc_status(pid, "VmRSS") or 0
        result["hwm_reset"] = reset_hwm(pid)
        sampler = RssSampler(pid, harness.data_dir / "tmp")
        sampler.start()
        try:
            uploads, archive, dd_runs = [], None, []
            for attempt in range(repeat):
                # dd and upload take turns, so the disk is in the same state for both
                sampler.phase("dd")
                dd_runs.append(dd_reference(path, harness.dir / "dd.out"))
                log(f"dd {attempt + 1}: {dd_runs[-1][0]:.0f} MB/s")
                settle()
                sampler.phase("upload")
                cpu = proc_cpu(pid)
                sectors = disk_sectors_written(harness.data_dir)
                response = harness.dir / "upload.json"
                started = time.perf_counter()
                code, _, _, elapsed = curl(
                    "-o", str(response), "-H", f"Upload-Token: {ticket_token}",
                    "-F", f"file=@{path};filename=bench-{human(size)}.bin",
                    f"{harness.base}/api/v1/archives/")
                body = response.read_text()
                if code != 201:
                    raise RuntimeError(f"upload answered {code}: {body[:500]}")
                archive = json.loads(body)
                if archive["sha256"] != expected or archive["size"] != size:
                    raise RuntimeError(f"upload stored a different file: {archive}")
                after = disk_sectors_written(harness.data_dir)
                written = (after - sectors) * 512 if sectors is not None else None
                received = sampler.staged_at - started if sampler.staged_at else None
                uploads.append((size / elapsed / MB, elapsed, proc_cpu(pid) - cpu, received,
                                written))
                sampler.phase("between")
                log(f"upload {attempt + 1}: {uploads[-1][0]:.0f} MB/s in {elapsed:.1f} s "
                    f"(body received by waitress after {received or 0:.1f} s), server CPU "
                    f"{uploads[-1][2]:.1f} s, disk writes {(written or 0) / 1024**3:.2f} GiB, "
                    f"sha256 ok")
                if attempt + 1 < repeat:  # keep one archive on disk
                    harness.api("DELETE", f"/api/v1/archives/{archive['id']}/", expect=(204,))
                settle()
            result["dd"] = median_run(dd_runs)[0]
            result["upload"] = median_run(uploads)

            downloads = []
            url = f"{harness.base}/api/v1/archives/{archive['id']}/download"
            for attempt in range(repeat):
                sampler.phase("download")
                cpu = proc_cpu(pid)
                code, _, down, elapsed = curl_download(
                    url, [f"Authorization: Bearer {harness.token}"])
                if code != 200 or down != size:
                    raise RuntimeError(f"download answered {code} with {down} bytes")
                downloads.append((size / elapsed / MB, elapsed, proc_cpu(pid) - cpu))
                sampler.phase("between")
                log(f"download {attempt + 1}: {downloads[-1][0]:.0f} MB/s in {elapsed:.1f} s, "
                    f"server CPU {downloads[-1][2]:.1f} s")
            result["download"] = median_run(downloads)
            harness.api("DELETE", f"/api/v1/archives/{archive['id']}/", expect=(204,))
        finally:
            sampler.stop()
            result["rss_peaks"] = sampler.peaks
            result["hwm_run"] = proc_status(pid, "VmHWM") or 0
            result["hwm"] = max(result["hwm_run"], result["hwm_start"])
            harness.stop_server()

        for mode in ("sendfile", "send"):
            ceiling = SendfileServer(path, mode)
            ceiling.start()
            try:
                runs = []
                for _ in range(repeat):
                    code, _, down, elapsed = curl_download(
                        f"http://127.0.0.1:{ceiling.port}/file")
                    if code != 200 or down != size:
                        raise RuntimeError(f"{mode} server answered {code} with {down} bytes")
                    runs.append(size / elapsed / MB)
                result[mode] = median_run([(rate,) for rate in runs])[0]
                log(f"{mode} loopback: {result[mode]:.0f} MB/s")
            finally:
                ceiling.stop()
    finally:
        path.unlink(missing_ok=True)
        # the stored archive and any staging leftovers go too: only one size on disk at once
        for child in (harness.data_dir / "archives").glob("??/*"):
            child.unlink(missing_ok=True)
    return result


def median_run(runs):
    """The run with the median rate (the first field); the lower middle one for even N."""
    ordered = sorted(runs, key=lambda run: run[0])
    return ordered[(len(ordered) - 1) // 2]


def verdict(ok):
    return "PASS" if ok else "FAIL"


def print_report(results, db):
    print()
    version = subprocess.run(["curl", "--version"], check=False, capture_output=True,
                             text=True).stdout.split()[1]
    print(f"Logs Collector upload/download benchmark — db={db}, client=curl {version}, "
          f"data dir under {REPO / 'var'}")
    print(f"MB = 10^6 bytes; median of the runs; one fresh server per size; "
          f"{os.cpu_count()} CPUs")
    header = f"{'size':>6} {'metric':<26} {'value':>10} {'reference':>18} {'ratio':>6}  " \
             f"{'target':<14} result"
    print(header)
    print("-" * len(header))
    for r in results:
        size = human(r["size"])
        up_rate, up_time, up_cpu, up_received, up_written = r["upload"]
        down_rate, down_time, down_cpu = r["download"]
        up_ratio, down_ratio = up_rate / r["dd"], down_rate / r["sendfile"]
        rss_mb = r["hwm"] / MB
        rows = [
            ("dd bs=1M conv=fsync", f"{r['dd']:.0f} MB/s", "", "", "", ""),
            ("upload curl -F (1 POST)", f"{up_rate:.0f} MB/s", f"dd {r['dd']:.0f} MB/s",
             f"{up_ratio:.2f}", f">= {TARGET_UPLOAD:.2f} x dd", verdict(up_ratio >= TARGET_UPLOAD)),
            ("  time / server CPU", f"{up_time:.1f} s", f"CPU {up_cpu:.1f} s", "", "", ""),
            ("  waitress receive / app", f"{up_received or 0:.1f} s",
             f"app {up_time - (up_received or 0):.1f} s", "", "", ""),
            ("  disk writes / size", f"{(up_written or 0) / r['size']:.2f} x", "dd: 1.00 x",
             "", "", ""),
            ("sendfile loopback", f"{r['sendfile']:.0f} MB/s", "", "", "", ""),
            ("download curl", f"{down_rate:.0f} MB/s", f"sendfile {r['sendfile']:.0f} MB/s",
             f"{down_ratio:.2f}", f">= {TARGET_DOWNLOAD:.2f} x ceil",
             verdict(down_ratio >= TARGET_DOWNLOAD)),
            ("  vs read+send loopback", f"{down_rate:.0f} MB/s", f"send {r['send']:.0f} MB/s",
             f"{down_rate / r['send']:.2f}", "(information)", ""),
            ("  time / server CPU", f"{down_time:.1f} s", f"CPU {down_cpu:.1f} s", "", "", ""),
            ("server peak RSS (VmHWM)", f"{rss_mb:.0f} MB", "", "", f"< {TARGET_RSS_MB} MB",
             verdict(rss_mb < TARGET_RSS_MB)),
        ]
        run_mb = r["hwm_run"] / MB
        rows.append(("  of which at startup", f"{r['hwm_start'] / MB:.0f} MB",
                     f"idle RSS {r['rss_idle'] / MB:.0f} MB", "", "", ""))
        if r["hwm_reset"]:
            rows.append(("  peak during transfers", f"{run_mb:.0f} MB", "HWM reset after start",
                         "", f"< {TARGET_RSS_MB} MB", verdict(run_mb < TARGET_RSS_MB)))
        peaks = r["rss_peaks"]
        rows.append(("  VmRSS max up/down",
                     "/".join(f"{peaks.get(k, 0) / MB:.0f}" for k in ("upload", "download"))
                     + " MB", "sampled every 20 ms", "", "", ""))
        for name, value, ref, ratio, target, result in rows:
            print(f"{size:>6} {name:<26} {value:>10} {ref:>18} {ratio:>6}  {target:<14} {result}")
            size = ""
        print()
    if len(results) > 1:
        hwms = [r["hwm_run"] / MB for r in results]
        growth = max(hwms) - min(hwms)
        listing = ", ".join(f"{human(r['size'])}: {h:.0f} MB"
                            for r, h in zip(results, hwms, strict=True))
        print(f"peak RSS during transfers across sizes: {listing}"
              f" — spread {growth:.0f} MB (target: independent of size, spread < 10 MB: "
              f"{verdict(growth < 10)})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1GiB", help="file size (default 1GiB)")
    parser.add_argument("--sizes", help="comma list, e.g. 1GiB,3GiB (overrides --size)")
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per measurement (the median is reported)")
    args = parser.parse_args(argv)
    sizes = [parse_size(s) for s in (args.sizes or args.size).split(",") if s.strip()]
    for tool in ("curl", "dd"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is required (apt-get install -y {tool})")
    max_size = max(sizes)
    env = {"UPLOAD_MAX_SIZE": str(max(max_size + MiB, 4 * 1024**3)),
           "STORAGE_RESERVE": "256MiB"}
    needed = 3 * max_size + 512 * MiB  # file + waitress spool + stored archive
    free = shutil.disk_usage(REPO / "var" if (REPO / "var").exists() else REPO).free
    if free < needed:
        raise SystemExit(f"need {needed / 1024**3:.1f} GiB free next to the repo, "
                         f"have {free / 1024**3:.1f} GiB")
    results = []
    with handle_signals(), Harness(args.db, env=env, label="updown") as harness:
        harness.setup()
        harness.start_server()
        ticket = harness.create_ticket(number=1, attempts=1000)
        harness.stop_server()
        for size in sizes:
            results.append(run_size(harness, size, args.repeat, ticket["token"]))
        print_report(results, args.db)
        print_server_warnings(harness)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted; cleaned up")
        sys.exit(130)
