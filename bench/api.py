#!/usr/bin/env python3
"""Request rate and latency of the REST API under wrk, with a realistic database.

    .venv/bin/python bench/api.py [--db sqlite|postgresql] [--tickets 100000]
                                  [--duration 10] [--connections 16] [--threads 2]

Against a real ``collector serve`` (waitress) on 127.0.0.1, with N tickets bulk-inserted
into the ``tickets`` table (SQLAlchemy Core, after ``collector migrate``), wrk
(``-t2 -c16 -d10s --latency``) measures:

* ``GET /api/v1/check/token/{token}`` (anyone; one indexed lookup);
* ``GET /api/v1/tickets/?limit=50&offset=…`` with a bearer token, the offset random
  over the whole table (a Lua script);
* ``GET /api/v1/check/health/`` idle, and again while 8 slow uploads are in flight
  (8 threads, raw sockets, each sending a multipart body of 64 KiB every 100 ms).

As a reference, the same wrk run against a bare WSGI app (constant JSON body) on waitress
with the same thread count: the ceiling of any app on this server and machine.
It prints req/s, p50 and p99 next to the targets. ``--db postgresql`` creates a database
``collector_bench_…`` on ``postgresql://postgres@127.0.0.1/`` and drops it at the end.
All traffic goes to 127.0.0.1; every phase is bounded in time; everything is cleaned up.
"""

import argparse
import datetime as dt
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from upload_download import Harness, handle_signals, log, proc_cpu, proc_status, stop_process

MB = 1_000_000

TARGETS = {
    "token": {"rps": 1000, "p99": 50.0},
    "tickets": {"p99": 100.0},
    "health-uploads": {"p99": 50.0},
}


# --- filling the database ----------------------------------------------------------------

def bulk_tickets(harness, count, platform_name="bench", batch=5000):
    """Insert ``count`` tickets straight into the table; return (first token, seconds)."""
    from sqlalchemy import insert, select, text

    from collector.accounts.models import User
    from collector.tickets.models import Platform, Ticket, token_digest

    engine = harness.engine()
    started = time.perf_counter()
    now = dt.datetime.now(dt.UTC)
    expires = now + dt.timedelta(days=30)
    sample_token = None
    try:
        with engine.begin() as conn:
            user_id = conn.scalar(select(User.id).where(User.username == "admin"))
            platform_id = conn.scalar(select(Platform.id).where(Platform.name == platform_name))
            for start in range(0, count, batch):
                rows = []
                for number in range(start + 1, min(start + batch, count) + 1):
                    created = now - dt.timedelta(seconds=count - number)
                    token = secrets.token_urlsafe(32)
                    rows.append({
                        "number": number, "platform_id": platform_id, "user_id": user_id,
                        "token": token, "token_digest": token_digest(token),
                        "attempts": 5, "resolved": False,
                        "note": f"bench ticket {number}", "expires_at": expires,
                        "time_create": created, "time_update": created,
                    })
                conn.execute(insert(Ticket), rows)
                if sample_token is None:
                    sample_token = rows[len(rows) // 2]["token"]
        if engine.dialect.name == "postgresql":
            # What autovacuum does soon after a bulk load in production: planner statistics.
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE tickets"))
    finally:
        engine.dispose()
    return sample_token, time.perf_counter() - started


# --- wrk ---------------------------------------------------------------------------------

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text):
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    return float(match.group(1)) * _UNITS[match.group(2)] if match else None


def parse_wrk(output):
    result = {"rps": None, "p50": None, "p99": None, "requests": 0, "errors": "",
              "non2xx": 0}
    if match := re.search(r"Requests/sec:\s+([\d.]+)", output):
        result["rps"] = float(match.group(1))
    for percentile in ("50", "99"):
        if match := re.search(rf"^\s+{percentile}(?:\.0+)?%\s+(\S+)", output, re.MULTILINE):
            result[f"p{percentile}"] = _ms(match.group(1))
    if match := re.search(r"(\d+) requests in", output):
        result["requests"] = int(match.group(1))
    if match := re.search(r"Socket errors: (.*)", output):
        result["errors"] = match.group(1).strip()
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        result["non2xx"] = int(match.group(1))
    return result


def run_wrk(harness, path, args, script=None, headers=(), base=None, pid=None):
    command = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s",
               "--latency", "--timeout", "5s"]
    for header in headers:
        command += ["-H", header]
    if script:
        command += ["-s", str(script)]
    command.append((base or harness.base) + path)
    pid = pid or harness.proc.pid
    cpu = proc_cpu(pid)
    result = subprocess.run(command, check=False, capture_output=True, text=True,
                            timeout=args.duration + 60)
    if result.returncode:
        raise RuntimeError(f"wrk failed: {result.stderr or result.stdout}")
    parsed = parse_wrk(result.stdout)
    parsed["raw"] = result.stdout
    parsed["server_cpu"] = proc_cpu(pid) - cpu
    return parsed


def tickets_script(harness, token, tickets, limit=50):
    path = harness.dir / "tickets.lua"
    path.write_text(f"""-- random page of /api/v1/tickets/ with a bearer token
local max_offset = {max(tickets - limit, 0)}
wrk.headers["Authorization"] = "Bearer {token}"
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end
function init(args)
  math.randomseed(os.time() + seed * 7919)
end
function request()
  local offset = math.random(0, max_offset)
  return wrk.format("GET", "/api/v1/tickets/?limit={limit}&offset=" .. offset)
end
""")
    return path


# --- the reference: a bare WSGI app on waitress ---------------------------------------------

BARE_APP = """
import sys, waitress
BODY = b'{"status": "ok"}'
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(BODY)))])
    return [BODY]
waitress.serve(app, listen=sys.argv[1], threads=int(sys.argv[2]), ident="bare",
               _quiet=True)
"""


class BareServer:
    """waitress with the same thread count, serving a constant JSON body: the ceiling."""

    def __init__(self, threads):
        from upload_download import free_port

        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", BARE_APP, f"127.0.0.1:{self.port}", str(threads)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("the bare waitress reference did not start")

    def stop(self):
        stop_process(self.proc)


# --- slow uploads ------------------------------------------------------------------------

class SlowUpload(threading.Thread):
    """One multipart POST over a raw socket, ``chunk`` bytes every ``interval`` seconds."""

    def __init__(self, port, token, duration, chunk=64 * 1024, interval=0.1, index=0):
        super().__init__(daemon=True, name=f"slow-upload-{index}")
        self.port, self.token, self.index = port, token, index
        self.chunk, self.interval = chunk, interval
        self.chunks = max(1, int(duration / interval))
        self.status = None
        self.error = None
        self.elapsed = None
        self.stopping = threading.Event()

    def run(self):
        boundary = secrets.token_hex(16)
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                f"filename=\"slow-{self.index}.log\"\r\nContent-Type: application/octet-stream"
                "\r\n\r\n").encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        length = len(head) + self.chunk * self.chunks + len(tail)
        started = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
                sock.sendall((
                    f"POST /api/v1/archives/ HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                    f"Upload-Token: {self.token}\r\n"
                    f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                    f"Content-Length: {length}\r\nConnection: close\r\n\r\n").encode() + head)
                block = os.urandom(self.chunk)
                next_at = time.monotonic()
                for _ in range(self.chunks):
                    if self.stopping.is_set():
                        self.error = "stopped"
                        return
                    sock.sendall(block)
                    next_at += self.interval
                    time.sleep(max(0.0, next_at - time.monotonic()))
                sock.sendall(tail)
                response = b""
                while b"\r\n" not in response:
                    data = sock.recv(65536)
                    if not data:
                        break
                    response += data
                line = response.split(b"\r\n", 1)[0].decode(errors="replace")
                self.status = int(line.split()[1]) if line.startswith("HTTP/") else None
        except OSError as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.elapsed = time.perf_counter() - started


# --- the run -----------------------------------------------------------------------------

def verdict(ok):
    return "PASS" if ok else "FAIL"


def check(name, result):
    target = TARGETS.get(name, {})
    parts, ok = [], True
    if "rps" in target:
        parts.append(f">= {target['rps']} req/s")
        ok &= (result["rps"] or 0) >= target["rps"]
    if "p99" in target:
        parts.append(f"p99 < {target['p99']:.0f} ms")
        ok &= result["p99"] is not None and result["p99"] < target["p99"]
    if result["non2xx"] or result["errors"]:
        ok = False
    return ", ".join(parts), (verdict(ok) if parts else "")


ROWS = ("bare", "token", "tickets", "health", "health-uploads")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--uploads", type=int, default=8, help="slow uploads in flight")
    parser.add_argument("--raw", action="store_true", help="also print wrk's own output")
    parser.add_argument("--only", type=lambda text: set(text.split(",")), default=set(ROWS),
                        help=f"comma list of rows to run ({','.join(ROWS)}); default all")
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        raise SystemExit("wrk is required: apt-get install -y wrk (Debian/Ubuntu)")

    results = {}
    with handle_signals(), Harness(args.db, label="api") as harness:
        harness.setup()
        harness.start_server()
        harness.api("POST", "/api/v1/platforms/", {"name": "bench", "pretty_name": "Bench"})
        harness.stop_server()  # the server must not hold the SQLite file while we bulk-load
        token, seconds = bulk_tickets(harness, args.tickets)
        log(f"inserted {args.tickets} tickets in {seconds:.1f} s")
        pid = harness.start_server()
        upload_ticket = harness.create_ticket(number=args.tickets + 1, attempts=1000)
        state = harness.request("GET", f"/api/v1/check/token/{token}")
        if state[0] != 200 or not json.loads(state[2])["valid"]:
            raise RuntimeError(f"token check of a bulk ticket failed: {state}")
        status, headers, _ = harness.request(
            "GET", "/api/v1/tickets/?limit=50&offset=0",
            headers={"Authorization": f"Bearer {harness.token}"})
        total = headers.get("X-Total-Count")
        if status != 200 or int(total or 0) != args.tickets + 1:
            raise RuntimeError(f"ticket list answered {status} with X-Total-Count {total}")

        if "bare" in args.only:
            log("wrk: reference, a bare WSGI app on waitress")
            bare = BareServer(int(harness.env().get("WAITRESS_THREADS", 8)))
            try:
                results["bare"] = run_wrk(harness, "/", args, base=bare.base,
                                          pid=bare.proc.pid)
            finally:
                bare.stop()
        if "token" in args.only:
            log("wrk: token check")
            results["token"] = run_wrk(harness, f"/api/v1/check/token/{token}", args)
        if "tickets" in args.only:
            log("wrk: ticket pages")
            results["tickets"] = run_wrk(harness, "/api/v1/tickets/?limit=50&offset=0", args,
                                         script=tickets_script(harness, harness.token,
                                                               args.tickets + 1))
        if "health" in args.only:
            log("wrk: health (idle)")
            results["health"] = run_wrk(harness, "/api/v1/check/health/", args)

        rows_with_uploads = "health-uploads" in args.only
        if rows_with_uploads:
            log(f"wrk: health while {args.uploads} slow uploads are in flight")
        uploads = [SlowUpload(harness.port, upload_ticket["token"], args.duration + 3, index=i)
                   for i in range(args.uploads if rows_with_uploads else 0)]
        try:
            for upload in uploads:
                upload.start()
            rss_before = proc_status(pid, "VmRSS") or 0
            if rows_with_uploads:
                time.sleep(1.0)  # all of them connected and sending
                rss_before = proc_status(pid, "VmRSS") or 0
                results["health-uploads"] = run_wrk(harness, "/api/v1/check/health/", args)
            for upload in uploads:
                upload.join(args.duration + 30)
        finally:
            for upload in uploads:
                upload.stopping.set()
            for upload in uploads:
                upload.join(5)
        upload_report = [(u.status, u.error, u.elapsed) for u in uploads]
        hwm = proc_status(pid, "VmHWM") or 0
        rss = proc_status(pid, "VmRSS") or 0

        print()
        print(f"Logs Collector API benchmark — db={args.db}, {args.tickets} tickets, "
              f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, "
              f"server: waitress, {os.cpu_count()} CPUs shared by wrk and the server")
        header = (f"{'endpoint':<44} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} "
                  f"{'srv CPU':>8}  {'target':<26} result")
        print(header)
        print("-" * len(header))
        names = {
            "bare": "reference: bare WSGI app on waitress",
            "token": "GET /api/v1/check/token/{token}",
            "tickets": "GET /api/v1/tickets/?limit=50&offset=rand",
            "health": "GET /api/v1/check/health/ (idle)",
            "health-uploads": f"GET /api/v1/check/health/ ({args.uploads} slow uploads)",
        }
        for key, label in names.items():
            if key not in results:
                continue
            r = results[key]
            target, result = check(key, r)
            errors = r["non2xx"] + (1 if r["errors"] else 0)
            print(f"{label:<44} {r['rps'] or 0:>8.0f} {r['p50'] or 0:>8.1f} {r['p99'] or 0:>8.1f} "
                  f"{errors:>7} {r['server_cpu']:>7.1f}s  {target:<26} {result}")
        print()
        statuses = ", ".join(f"{s or '-'}{' ' + e if e else ''} in {t:.1f}s"
                             for s, e, t in upload_report)
        if uploads:
            print(f"slow uploads (64 KiB / 100 ms, {args.duration + 3} s each): {statuses}")
        print(f"server RSS: {rss_before / MB:.0f} MB with uploads in flight, {rss / MB:.0f} MB "
              f"at the end, peak (VmHWM, incl. startup) {hwm / MB:.0f} MB")
        for key, r in results.items():
            if r["errors"] or r["non2xx"]:
                print(f"{key}: socket errors {r['errors'] or 'none'}, non-2xx {r['non2xx']}")
        if args.raw:
            for key, r in results.items():
                print(f"\n--- wrk output: {key}\n{r['raw']}")
        lines = harness.server_log().splitlines()
        queue = sum("Task queue depth" in line for line in lines)
        if queue:
            print(f"server log: {queue} waitress 'Task queue depth is N' warnings "
                  f"({args.connections} connections > waitress threads)")
        warnings = [line for line in lines if "Task queue depth" not in line
                    and ("WARN" in line or "ERROR" in line or "Traceback" in line)]
        if warnings:
            print(f"server log: {len(warnings)} other warning/error line(s), last ones:")
            print("\n".join(warnings[-10:]))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted; cleaned up")
        sys.exit(130)
