#!/usr/bin/env python3
"""A small ranged download (the last 1 MB of a big archive) against nginx serving the same
file.

    .venv/bin/python bench/range.py [--size 1GiB] [--requests 200] [--repeat 3]
                                    [--db sqlite|postgresql] [--no-nginx]

One ``collector serve`` on 127.0.0.1 with a temporary DATA_DIR under ``var/``; an archive
of ``--size`` is uploaded once (``PUT``, one request), then each round times
``--requests`` requests of ``Range: bytes=-1048576`` by the admin's two-factor bearer
token, each on a new connection (as curl does), through:

* the API route, ``GET /api/v1/archives/{id}/download``;
* the page route, ``GET /platforms/{name}/tickets/{number}/archives/{id}/download``;
* nginx (``apt-get install nginx``; a config of its own in the temporary directory, a free
  port on 127.0.0.1, ``sendfile on``, no access log) serving the stored file itself.

Every answer must be ``206`` with the right ``Content-Range`` and 1,048,576 bytes. The
three take turns within each round; each figure is a round's median request time, and the
report gives min/median/max over the rounds with the 1-minute load average. Target: the
API route's median ≤ 2.5 ms. Everything (server, nginx: by PID; files; a PostgreSQL
database) is removed at the end, on failure or Ctrl-C too.
"""

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from upload_download import (  # noqa: E402 (a script beside its harness)
    Harness,
    MiB,
    free_port,
    handle_signals,
    human,
    log,
    parse_size,
    stop_process,
)

TAIL = 1_048_576
TARGET_MS = 2.5
NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def make_file(path, size):
    block = os.urandom(MiB)
    with open(path, "wb") as out:
        for _ in range(size // MiB):
            out.write(block)
        out.write(block[:size % MiB])


def upload(harness, token, path):
    conn = http.client.HTTPConnection("127.0.0.1", harness.port, timeout=3600)
    try:
        with open(path, "rb") as body:
            conn.request("PUT", f"/api/v1/archives/{path.name}", body=body, headers={
                "Upload-Token": token, "Content-Length": str(path.stat().st_size),
                "Content-Type": "application/octet-stream"})
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    if response.status != 201:
        raise RuntimeError(f"upload: {response.status} {data[:300]!r}")
    return json.loads(data)


def stored_file(data_dir, size):
    found = [p for p in (data_dir / "archives").rglob("*")
             if p.is_file() and p.stat().st_size == size]
    if len(found) != 1:
        raise RuntimeError(f"expected one stored file of {size} bytes, found {found}")
    return found[0]


class Nginx:
    """nginx serving ``root`` on a free port of 127.0.0.1, stopped by its PID."""

    def __init__(self, directory, root):
        self.dir, self.root = directory, root
        self.proc = None
        self.port = free_port()

    def __enter__(self):
        self.dir.mkdir()
        conf = self.dir / "nginx.conf"
        # The workers run as root only when we are root: the stored file sits under the
        # caller's (often 0700) temporary directory, which nginx's default user cannot read.
        user = "user root;" if os.geteuid() == 0 else ""
        conf.write_text(f"""
{user}
daemon off;
worker_processes 1;
pid {self.dir / 'nginx.pid'};
error_log {self.dir / 'error.log'} warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    sendfile on;
    client_body_temp_path {self.dir / 'body'};
    proxy_temp_path {self.dir / 'proxy'};
    fastcgi_temp_path {self.dir / 'fastcgi'};
    uwsgi_temp_path {self.dir / 'uwsgi'};
    scgi_temp_path {self.dir / 'scgi'};
    server {{
        listen 127.0.0.1:{self.port};
        root {self.root};
        location / {{ default_type application/octet-stream; }}
    }}
}}
""")
        self.proc = subprocess.Popen([NGINX, "-p", str(self.dir), "-c", str(conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("nginx exited: " + (self.dir / "error.log").read_text())
            try:
                http.client.HTTPConnection("127.0.0.1", self.port, timeout=1).connect()
                log(f"nginx pid {self.proc.pid} on 127.0.0.1:{self.port}")
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not listen within 10 s")

    def __exit__(self, *exc):
        stop_process(self.proc, "nginx")
        return False


def ranged_get(port, path, headers, size):
    """One ranged GET on a new connection; its duration in seconds (checked answer)."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Range": f"bytes=-{TAIL}", **headers})
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    elapsed = time.perf_counter() - started
    expected = f"bytes {size - TAIL}-{size - 1}/{size}"
    if response.status != 206 or len(data) != TAIL or \
            response.getheader("Content-Range") != expected:
        raise RuntimeError(f"GET {path}: {response.status} {response.getheader('Content-Range')}"
                           f" {len(data)} bytes {data[:200]!r}")
    return elapsed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=parse_size("1GiB"))
    parser.add_argument("--requests", type=int, default=200, help="per row and round")
    parser.add_argument("--repeat", type=int, default=3, help="rounds")
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--no-nginx", action="store_true")
    args = parser.parse_args(argv)
    if not args.no_nginx and NGINX is None:
        parser.error("nginx not found (apt-get install nginx, or --no-nginx)")
    loads = []
    with handle_signals(), Harness(db=args.db, label="range") as harness:
        harness.setup()
        harness.start_server()
        ticket = harness.create_ticket(number=1)
        source = harness.dir / "archive.bin"
        make_file(source, args.size)
        archive = upload(harness, ticket["token"], source)
        source.unlink()
        stored = stored_file(harness.data_dir, args.size)
        bearer = {"Authorization": f"Bearer {harness.token}"}
        page = f"/platforms/bench/tickets/1/archives/{archive['id']}/download"
        rows = {"API route": (harness.port, f"/api/v1/archives/{archive['id']}/download",
                              bearer),
                "page route": (harness.port, page, bearer)}
        medians = {name: [] for name in [*rows, "nginx, same file"]}
        with (Nginx(harness.dir / "nginx", stored.parent) if not args.no_nginx
              else _nothing()) as nginx:
            if nginx is not None:
                rows["nginx, same file"] = (nginx.port, "/" + stored.name, {})
            else:
                del medians["nginx, same file"]
            for port, path, headers in rows.values():  # warm up
                for _ in range(20):
                    ranged_get(port, path, headers, args.size)
            for number in range(args.repeat):
                loads.append(os.getloadavg()[0])
                for name, (port, path, headers) in rows.items():
                    times = [ranged_get(port, path, headers, args.size)
                             for _ in range(args.requests)]
                    medians[name].append(statistics.median(times) * 1000)
                    log(f"round {number + 1}: {name} median {medians[name][-1]:.2f} ms")
    print(f"Range: bytes=-{TAIL} of a {human(args.size)} archive, {args.requests} requests per "
          f"row and round (new connection each), {args.repeat} rounds, {args.db}; 1-minute "
          f"load {min(loads):.2f}-{max(loads):.2f}")
    print(f"  {'row':<20} {'min':>8} {'median':>8} {'max':>8}   (round medians, ms)")
    for name, values in medians.items():
        print(f"  {name:<20} {min(values):8.2f} {statistics.median(values):8.2f} "
              f"{max(values):8.2f}")
    api = statistics.median(medians["API route"])
    met = api <= TARGET_MS
    if "nginx, same file" in medians:
        print(f"API route / nginx: {api / statistics.median(medians['nginx, same file']):.2f}x")
    print(f"API route median {api:.2f} ms (target <= {TARGET_MS} ms: "
          f"{'met' if met else 'MISSED'})")
    return 0 if met else 1


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


if __name__ == "__main__":
    sys.exit(main())
