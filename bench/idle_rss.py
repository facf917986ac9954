#!/usr/bin/env python3
"""Idle RSS of a server over many small uploads: does memory creep?

    .venv/bin/python bench/idle_rss.py [--uploads 200] [--db sqlite|postgresql]
                                       [--min-size 1MiB] [--max-size 8MiB]

One ``collector serve`` (waitress, the ini's defaults) on 127.0.0.1 with a temporary
DATA_DIR under ``var/`` (removed at the end, the server stopped by its PID). The uploads
take turns between the two protocols customers use: a single ``PUT …/archives/{name}``
(what ``curl -T`` sends) and a tus upload (creation, then one PATCH), each of its own
random size between ``--min-size`` and ``--max-size``, one after another on fresh
connections. After the 1st, 50th, 100th and 200th upload (and the last) the script lets
the server idle for ``--idle`` seconds and reads its ``VmRSS``: the figure printed.
Target: idle RSS after 200 uploads within 5 MB of idle RSS after the first.
"""

import argparse
import base64
import hashlib
import http.client
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from upload_download import (  # noqa: E402 (a script beside its harness)
    MB,
    Harness,
    handle_signals,
    log,
    parse_size,
    proc_status,
)

TARGET_CREEP_MB = 5
CHECKPOINTS = (1, 50, 100, 200)


def send(port, method, path, body, headers):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        return response.status, response.getheader("Location"), data
    finally:
        conn.close()


def put_upload(port, token, name, body):
    status, _, data = send(port, "PUT", f"/api/v1/archives/{name}", body,
                           {"Upload-Token": token, "Content-Type": "application/octet-stream"})
    if status != 201:
        raise RuntimeError(f"PUT {name}: {status} {data[:300]!r}")
    return data


def tus_upload(port, token, name, body):
    metadata = "filename " + base64.b64encode(name.encode()).decode()
    status, location, data = send(port, "POST", "/api/v1/uploads/", b"", {
        "Tus-Resumable": "1.0.0", "Upload-Length": str(len(body)),
        "Upload-Metadata": metadata, "Upload-Token": token})
    if status != 201:
        raise RuntimeError(f"tus creation {name}: {status} {data[:300]!r}")
    path = location.split("://", 1)[-1]
    path = path[path.index("/"):]
    status, _, data = send(port, "PATCH", path, body, {
        "Tus-Resumable": "1.0.0", "Upload-Offset": "0", "Upload-Token": token,
        "Content-Type": "application/offset+octet-stream"})
    if status != 204:
        raise RuntimeError(f"tus PATCH {name}: {status} {data[:300]!r}")


def idle_rss_mb(pid, seconds):
    time.sleep(seconds)
    return proc_status(pid, "VmRSS") / MB


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=200)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--min-size", type=parse_size, default=parse_size("1MiB"))
    parser.add_argument("--max-size", type=parse_size, default=parse_size("8MiB"))
    parser.add_argument("--idle", type=float, default=6.0,
                        help="seconds of idling before each reading")
    parser.add_argument("--seed", type=int, default=20)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    # One random block; each upload takes a slice with a prefix of its own.
    block = os.urandom(args.max_size)
    checkpoints = sorted({n for n in CHECKPOINTS if n <= args.uploads} | {args.uploads})
    readings = []
    with handle_signals(), Harness(db=args.db, label="idle-rss") as harness:
        harness.setup()
        pid = harness.start_server()
        fresh = idle_rss_mb(pid, args.idle)
        log(f"fresh server idles at {fresh:.1f} MB")
        ticket = harness.create_ticket(number=1, attempts=args.uploads + 10)
        token = ticket["token"]
        started = time.monotonic()
        for number in range(1, args.uploads + 1):
            size = rng.randint(args.min_size, args.max_size)
            body = hashlib.sha256(str(number).encode()).digest() + block[:size - 32]
            name = f"upload-{number}.bin"
            if number % 2:
                put_upload(harness.port, token, name, body)
            else:
                tus_upload(harness.port, token, name, body)
            if number in checkpoints:
                rss = idle_rss_mb(pid, args.idle)
                readings.append((number, rss))
                log(f"after {number} uploads: idle RSS {rss:.1f} MB "
                    f"({time.monotonic() - started:.0f} s)")
        load = os.getloadavg()[0]
        errors = [line for line in harness.server_log().splitlines() if "ERROR" in line]
    print(f"idle RSS of one server over {args.uploads} uploads of "
          f"{args.min_size // 2**20}-{args.max_size // 2**20} MiB (PUT and tus in turn), "
          f"{args.db}, 1-minute load {load:.2f}")
    print(f"  fresh                {fresh:7.1f} MB")
    for number, rss in readings:
        print(f"  after {number:4d} uploads   {rss:7.1f} MB   ({rss - readings[0][1]:+.1f} MB)")
    creep = readings[-1][1] - readings[0][1]
    met = creep <= TARGET_CREEP_MB
    print(f"creep after the first upload: {creep:+.1f} MB (target <= {TARGET_CREEP_MB} MB: "
          f"{'met' if met else 'MISSED'}); server errors logged: {len(errors)}")
    return 0 if met and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
