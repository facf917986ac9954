#!/usr/bin/env python3
"""Many customers uploading while staff work, next to dd; the ticket list under wrk.

    .venv/bin/python bench/load.py [--db sqlite|postgresql] [--customers 32] [--size 64MiB]
                                   [--chunk-size 8MiB] [--staff 8] [--tickets 100000]

Against a real ``collector serve`` (waitress, its default 8 threads) on 127.0.0.1, with
``--tickets`` tickets bulk-inserted first (as ``bench/api.py`` does):

1. **ticket list under wrk**: ``GET /api/v1/tickets/?limit=50&offset=<random>`` with a
   bearer token, ``wrk -t2 -c16 -d10s`` (``bench/api.py``'s Lua script and parser);
2. **staff alone** ("idle"): ``--staff`` threads, each in a loop: the ticket list page
   (``/tickets/?page=<random>``), a ticket's page (``/platforms/bench/tickets/{n}/``) and,
   every ``--download-every`` pages, a download of one of 4 stored 16 MiB archives (its
   sha256 checked) — for ``--idle-seconds``;
3. **the load**: ``--customers`` customers at once, each uploading its own ``--size`` file
   with **tus** (creation + PATCHes of ``--chunk-size``, the upload page's 8 MiB by
   default; ``--protocol single`` sends one ``POST /api/v1/archives/`` instead), while the
   same staff loop runs. Every receipt's sha256 must be the file's; afterwards every
   archive is downloaded and hashed again. Total MB/s is all customers' bytes over the
   time from the first creation to the last archive; the reference is ``dd bs=1M
   conv=fsync`` of the same bytes (fed through a pipe) to the same disk, in the same run.
   Staff page latency (p50/p99) during the load is printed beside step 2's; the server's
   peak RSS (``VmHWM`` reset just before the load, and ``VmRSS`` sampled every 20 ms);
4. **others' uploads keep their speed**: one customer's upload of ``--solo-size`` alone,
   then while 7 clients stall mid-body (4 single POSTs and 3 tus PATCHes that sent half
   their body and went silent: each holds a connection, which waitress keeps until the
   channel timeout), alternately for ``--repeat`` rounds; medians.

MB means 10^6 bytes. Everything lives in a temporary DATA_DIR under ``var/`` and is
removed at the end (also on failure or Ctrl-C); ``--db postgresql`` creates a database
and drops it. Needs wrk and dd, and about 3 × customers × size of free disk.
"""

import argparse
import concurrent.futures
import hashlib
import http.client
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

from api import bulk_tickets, run_wrk, tickets_script  # noqa: E402
from tus import RawTus  # noqa: E402
from upload_download import (  # noqa: E402
    MB,
    Harness,
    MiB,
    RssSampler,
    handle_signals,
    human,
    log,
    parse_size,
    proc_status,
    reset_hwm,
    settle,
)

STALLED_POSTS, STALLED_PATCHES = 4, 3


# --- the customers' bytes --------------------------------------------------------------------

class Body:
    """A customer's file without holding it: one shared random block, with a prefix of
    the customer's own in front, so that every file (and hash) differs. Has ``seek`` and
    ``read`` as RawTus wants."""

    def __init__(self, block, index):
        self.block = memoryview(block)
        self.prefix = f"customer {index:04d} {os.urandom(8).hex()}\n".encode()
        self.size = len(block)
        self.position = 0
        digest = hashlib.sha256(self.prefix)
        digest.update(self.block[len(self.prefix):])
        self.sha256 = digest.hexdigest()

    def seek(self, position):
        self.position = position

    def read(self, size):
        start, end = self.position, min(self.position + size, self.size)
        self.position = end
        if start >= len(self.prefix):
            return self.block[start:end]
        return (self.prefix + bytes(self.block[len(self.prefix):end]))[start:end]

    def blocks(self, size=MiB):
        self.seek(0)
        while self.position < self.size:
            yield self.read(size)


def upload_tus(harness, token, body, chunk, name):
    """creation + PATCHes; the receipt of the last one."""
    client = RawTus(harness.port, token)
    location = client.create(body.size, name)
    offset = 0
    while offset < body.size:
        _, headers, answer = client.patch(location, body, offset, min(chunk, body.size - offset))
        offset = int(headers["Upload-Offset"])
    return json.loads(answer)


def upload_single(harness, token, body, name):
    """One raw-body POST, sent in 1 MiB blocks; the receipt."""
    conn = http.client.HTTPConnection("127.0.0.1", harness.port, timeout=900)
    try:
        conn.putrequest("POST", f"/api/v1/archives/?filename={name}",
                        skip_accept_encoding=True)
        for header, value in {"Upload-Token": token, "Content-Length": str(body.size),
                              "Content-Type": "application/octet-stream"}.items():
            conn.putheader(header, value)
        conn.endheaders()
        for block in body.blocks():
            conn.send(block)
        response = conn.getresponse()
        answer = response.read()
        if response.status != 201:
            raise RuntimeError(f"upload answered {response.status}: {answer[:300]!r}")
        return json.loads(answer)
    finally:
        conn.close()


def upload(harness, args, token, body, name):
    if args.protocol == "single":
        return upload_single(harness, token, body, name)
    return upload_tus(harness, token, body, args.chunk_size, name)


def download_sha256(harness, archive_id):
    conn = http.client.HTTPConnection("127.0.0.1", harness.port, timeout=300)
    try:
        conn.request("GET", f"/api/v1/archives/{archive_id}/download",
                     headers={"Authorization": f"Bearer {harness.token}"})
        response = conn.getresponse()
        if response.status != 200:
            raise RuntimeError(f"download of archive {archive_id}: {response.status}")
        digest, size = hashlib.sha256(), 0
        while data := response.read(MiB):
            digest.update(data)
            size += len(data)
        return digest.hexdigest(), size
    finally:
        conn.close()


# --- the staff ---------------------------------------------------------------------------------

class Staff(threading.Thread):
    """Lists tickets, opens ticket pages, now and then downloads an archive, until told
    to stop; keeps each page's latency and every error."""

    def __init__(self, harness, index, tickets, ticket_numbers, stored, download_every):
        super().__init__(daemon=True, name=f"staff-{index}")
        self.harness, self.rng = harness, random.Random(index)
        self.pages = max(1, tickets // 25)
        self.ticket_numbers, self.stored = ticket_numbers, stored
        self.download_every = download_every
        self.latencies = []
        self.downloaded = 0
        self.errors = []
        self.stopping = threading.Event()

    def page(self, path):
        started = time.perf_counter()
        status, _, body = self.harness.request(
            "GET", path, headers={"Authorization": f"Bearer {self.harness.token}"}, timeout=120)
        self.latencies.append(time.perf_counter() - started)
        if status != 200 or b"</html>" not in body:
            self.errors.append(f"GET {path}: {status}")

    def run(self):
        count = 0
        while not self.stopping.is_set():
            try:
                self.page(f"/tickets/?page={self.rng.randrange(1, self.pages + 1)}")
                number = self.rng.choice(self.ticket_numbers)
                self.page(f"/platforms/bench/tickets/{number}/")
                count += 2
                if self.download_every and count % self.download_every < 2:
                    archive_id, sha256, size = self.rng.choice(self.stored)
                    got = download_sha256(self.harness, archive_id)
                    if got != (sha256, size):
                        self.errors.append(f"download {archive_id}: {got} != {sha256}")
                    self.downloaded += size
            except (OSError, RuntimeError, http.client.HTTPException) as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")


def run_staff(staff_threads, until):
    for staff in staff_threads:
        staff.start()
    until()
    for staff in staff_threads:
        staff.stopping.set()
    for staff in staff_threads:
        staff.join(300)
    latencies = sorted(x for s in staff_threads for x in s.latencies)
    return {"pages": len(latencies), "p50": percentile(latencies, 50) * 1000,
            "p99": percentile(latencies, 99) * 1000,
            "downloaded": sum(s.downloaded for s in staff_threads),
            "errors": [e for s in staff_threads for e in s.errors]}


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


# --- stalled clients -----------------------------------------------------------------------------

def stalled_clients(harness, token, size=8 * MiB):
    """4 single POSTs and 3 tus PATCHes that send half their body, then nothing."""
    client = RawTus(harness.port, token)
    socks = []
    half = b"\0" * (size // 2)
    for index in range(STALLED_POSTS + STALLED_PATCHES):
        if index < STALLED_POSTS:
            lines = ["POST /api/v1/archives/?filename=stalled.bin HTTP/1.1",
                     f"Upload-Token: {token}", "Content-Type: application/octet-stream"]
        else:
            location = client.create(size, "stalled.bin")
            lines = [f"PATCH {location} HTTP/1.1", "Tus-Resumable: 1.0.0",
                     f"Upload-Token: {token}", "Upload-Offset: 0",
                     "Content-Type: application/offset+octet-stream"]
        sock = socket.create_connection(("127.0.0.1", harness.port), timeout=30)
        head = "\r\n".join([*lines, f"Host: 127.0.0.1:{harness.port}",
                            f"Content-Length: {size}", "", ""])
        sock.sendall(head.encode() + half)
        socks.append(sock)
    return socks


def solo_upload(harness, args, token, body, name):
    started = time.perf_counter()
    receipt = upload(harness, args, token, body, name)
    elapsed = time.perf_counter() - started
    if receipt["sha256"] != body.sha256:
        raise RuntimeError(f"solo upload: sha256 {receipt['sha256']} != {body.sha256}")
    harness.api("DELETE", f"/api/v1/archives/{receipt['id']}/", expect=(204,))
    return body.size / elapsed / MB


# --- dd of the same bytes ------------------------------------------------------------------------

def dd_of(bodies, target):
    """``dd bs=1M conv=fsync`` of all bodies, fed through a pipe: MB/s."""
    started = time.perf_counter()
    dd = subprocess.Popen(["dd", f"of={target}", "bs=1M", "iflag=fullblock", "conv=fsync"],
                          stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
    for body in bodies:
        for block in body.blocks(4 * MiB):
            dd.stdin.write(block)
    dd.stdin.close()
    error = dd.stderr.read()
    if dd.wait():
        raise RuntimeError(f"dd failed: {error!r}")
    elapsed = time.perf_counter() - started
    written = os.path.getsize(target)
    os.unlink(target)
    return written / elapsed / MB, elapsed


# --- the run -------------------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--customers", type=int, default=32)
    parser.add_argument("--size", type=parse_size, default=parse_size("64MiB"))
    parser.add_argument("--protocol", choices=("tus", "single"), default="tus")
    parser.add_argument("--chunk-size", type=parse_size, default=parse_size("8MiB"))
    parser.add_argument("--staff", type=int, default=8)
    parser.add_argument("--download-every", type=int, default=10,
                        help="pages between two downloads of a staff member (0: none)")
    parser.add_argument("--idle-seconds", type=float, default=10)
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--duration", type=int, default=10, help="seconds of the wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--solo-size", type=parse_size, default=parse_size("256MiB"))
    parser.add_argument("--repeat", type=int, default=3, help="rounds of solo vs stalled")
    args = parser.parse_args(argv)
    for tool in ("wrk", "dd"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is required")

    with handle_signals(), Harness(args.db, label="load") as harness:
        harness.setup()
        harness.start_server()
        harness.api("POST", "/api/v1/platforms/", {"name": "bench", "pretty_name": "Bench"})
        harness.stop_server()  # the server must not hold the SQLite file while we bulk-load
        _, seconds = bulk_tickets(harness, args.tickets)
        log(f"inserted {args.tickets} tickets in {seconds:.1f} s")
        pid = harness.start_server()
        numbers = [args.tickets + 1 + i for i in range(args.customers + 2)]
        customers = [harness.create_ticket(number=n, attempts=100) for n in numbers]
        staff_ticket, solo_ticket = customers.pop(), customers.pop()
        block = os.urandom(args.size)
        bodies = [Body(block, i) for i in range(args.customers)]

        # 4 archives for staff to download
        stored = []
        small = os.urandom(16 * MiB)
        for index in range(4):
            body = Body(small, 1000 + index)
            receipt = upload_single(harness, staff_ticket["token"], body, f"staff-{index}.bin")
            stored.append((receipt["id"], body.sha256, body.size))

        def staff_threads():
            return [Staff(harness, i, args.tickets, numbers, stored, args.download_every)
                    for i in range(args.staff)]

        log(f"wrk: GET /api/v1/tickets/ ({args.tickets} tickets)")
        wrk_args = types.SimpleNamespace(threads=args.threads, connections=args.connections,
                                         duration=args.duration)
        listing = run_wrk(harness, "/api/v1/tickets/?limit=50&offset=0", wrk_args,
                          script=tickets_script(harness, harness.token, args.tickets +
                                                len(numbers)))

        log(f"{args.staff} staff alone for {args.idle_seconds:.0f} s")
        idle = run_staff(staff_threads(), lambda: time.sleep(args.idle_seconds))

        log(f"{args.customers} customers × {human(args.size)} ({args.protocol}) with "
            f"{args.staff} staff")
        settle()
        rss_before = proc_status(pid, "VmRSS") or 0
        reset_hwm(pid)
        sampler = RssSampler(pid)
        sampler.start()
        sampler.phase("load")
        receipts, failures = [None] * len(bodies), []
        timing = {}

        def customer(index):
            try:
                receipts[index] = upload(harness, args, customers[index]["token"],
                                         bodies[index], f"customer-{index}.bin")
            except (OSError, RuntimeError, http.client.HTTPException, KeyError) as exc:
                failures.append(f"customer {index}: {type(exc).__name__}: {exc}")

        def load():
            with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
                timing["start"] = time.perf_counter()
                list(pool.map(customer, range(len(bodies))))
                timing["end"] = time.perf_counter()

        busy = run_staff(staff_threads(), load)
        sampler.stop()
        peak = proc_status(pid, "VmHWM") or 0
        seconds = timing["end"] - timing["start"]
        total = sum(body.size for body in bodies)
        wrong = [i for i, (r, b) in enumerate(zip(receipts, bodies, strict=True))
                 if r is None or r["sha256"] != b.sha256 or r["size"] != b.size]
        log("downloading every customer's archive again (untimed)")
        for receipt, body in zip(receipts, bodies, strict=True):
            if receipt is not None and download_sha256(harness, receipt["id"]) != (
                    body.sha256, body.size):
                wrong.append(f"download of {receipt['id']}")
        settle()
        log("dd of the same bytes")
        dd_rate, dd_seconds = dd_of(bodies, harness.data_dir / "dd.bin")

        log(f"one upload of {human(args.solo_size)} alone / with 7 stalled clients")
        solo_body = Body(os.urandom(args.solo_size), 9999)
        alone, stalled = [], []
        for _ in range(args.repeat):
            settle(1)
            alone.append(solo_upload(harness, args, solo_ticket["token"], solo_body, "solo"))
            socks = stalled_clients(harness, staff_ticket["token"])
            try:
                time.sleep(0.5)
                settle(1)
                stalled.append(solo_upload(harness, args, solo_ticket["token"], solo_body,
                                           "solo"))
            finally:
                for sock in socks:
                    sock.close()
        log_lines = harness.server_log().splitlines()

    print()
    print(f"Logs Collector load benchmark — db={args.db}, {args.tickets} tickets, "
          f"{os.cpu_count()} CPUs shared by clients and server, waitress threads 8")
    print(f"ticket list: GET /api/v1/tickets/?limit=50&offset=rand, wrk -t{args.threads} "
          f"-c{args.connections} -d{args.duration}s: {listing['rps']:.0f} req/s, "
          f"p50 {listing['p50']:.1f} ms, p99 {listing['p99']:.1f} ms, errors "
          f"{listing['non2xx'] + (1 if listing['errors'] else 0)}")
    print(f"{args.customers} customers × {human(args.size)} over {args.protocol}"
          + (f" ({human(args.chunk_size)} chunks)" if args.protocol == "tus" else "")
          + f": {total / seconds / MB:.0f} MB/s in all ({seconds:.1f} s); dd bs=1M "
          f"conv=fsync of the same bytes: {dd_rate:.0f} MB/s ({dd_seconds:.1f} s); ratio "
          f"{total / seconds / MB / dd_rate:.2f}")
    print(f"  failed uploads: {len(failures)}; wrong hashes: {len(wrong)}")
    for line in (failures + [str(w) for w in wrong])[:10]:
        print(f"    {line}")
    print(f"staff pages ({args.staff} staff: ticket list page, ticket page, a 16 MiB download "
          f"every {args.download_every} pages):")
    for label, result in (("alone", idle), ("during the uploads", busy)):
        print(f"  {label:<20} {result['pages']:>6} pages  p50 {result['p50']:7.1f} ms  "
              f"p99 {result['p99']:7.1f} ms  downloaded {result['downloaded'] / MB:6.0f} MB  "
              f"errors {len(result['errors'])}")
        for line in result["errors"][:5]:
            print(f"    {line}")
    print(f"server peak RSS during the load: VmHWM {peak / MB:.0f} MB (reset just before "
          f"it), VmRSS sampled {sampler.peaks.get('load', 0) / MB:.0f} MB; before the load "
          f"{rss_before / MB:.0f} MB")
    print(f"one upload of {human(args.solo_size)} ({args.protocol}), medians of "
          f"{args.repeat}: alone {statistics.median(alone):.0f} MB/s, with "
          f"{STALLED_POSTS + STALLED_PATCHES} stalled clients "
          f"{statistics.median(stalled):.0f} MB/s (ratio "
          f"{statistics.median(stalled) / statistics.median(alone):.2f}; runs "
          f"{', '.join(f'{a:.0f}/{s:.0f}' for a, s in zip(alone, stalled, strict=True))})")
    problems = [line for line in log_lines
                if "Traceback" in line or "ERROR" in line]
    if problems:
        print(f"server log: {len(problems)} error line(s), last ones:")
        print("\n".join(problems[-10:]))
    ok = not failures and not wrong and not idle["errors"] and not busy["errors"] \
        and not problems
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted; cleaned up")
        sys.exit(130)
