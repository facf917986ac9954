#!/usr/bin/env python3
"""Health-check latency for one client while others hold or trickle connections.

    .venv/bin/python bench/connections.py [--idle 250] [--slowloris 250] [--probes 20]
                                          [--probe-timeout 30]

Against a real ``collector serve`` (waitress, the ini's defaults: connection limit 200,
channel timeout 120 s) on 127.0.0.1, with three scenarios one after the other:

1. **one address, idle**: ``--idle`` connections from 127.0.0.1 that send nothing;
2. **many addresses, slowloris**: ``--slowloris`` connections spread over 127.0.0.3 …
   127.0.0.12 (each address under the per-address limit), each trickling a request head
   one byte a second;
3. **many addresses, idle**: the same number of connections, idle.

During each, ``--probes`` health checks (``GET /api/v1/check/health/``, a new connection
each, started every 0.5 s) come from 127.0.0.2 (Linux routes all of 127/8 to the
loopback); the script prints their latency p50 and max, and how many got no answer within
``--probe-timeout`` seconds. Run it against older code with ``PYTHONPATH=<checkout>`` to
compare. The server and its temporary DATA_DIR are removed at the end.
"""

import argparse
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

from upload_download import Harness, log  # noqa: E402

PROBE_FROM = "127.0.0.2"
SPREAD_OVER = [f"127.0.0.{n}" for n in range(3, 13)]


def connect(port, source, timeout=10):
    return socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                    source_address=(source, 0))


def probe(port, timeout):
    """Seconds one health check took, or None without an answer within ``timeout``."""
    started = time.monotonic()
    try:
        with connect(port, PROBE_FROM, timeout) as sock:
            sock.sendall(f"GET /api/v1/check/health/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                         "Connection: close\r\n\r\n".encode())
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
    except (TimeoutError, ConnectionError):
        return None
    if not answer.startswith(b"HTTP/1.1 200 "):
        return None
    return time.monotonic() - started


def probes(port, count, timeout):
    """``count`` health checks started 0.5 s apart, each on its own thread."""
    results = [None] * count

    def one(n):
        results[n] = probe(port, timeout)

    threads = []
    for n in range(count):
        threads.append(threading.Thread(target=one, args=(n,)))
        threads[-1].start()
        time.sleep(0.5)
    for thread in threads:
        thread.join()
    answered = sorted(r for r in results if r is not None)
    return {"p50": statistics.median(answered) if answered else None,
            "max": answered[-1] if answered else None,
            "unanswered": len(results) - len(answered)}


def hold(port, count, sources, trickle):
    """``count`` connections spread over ``sources``; with ``trickle``, a thread sends
    each a byte of a never-ending request head every second. Returns a stop function."""
    sockets = []
    for n in range(count):
        try:
            sockets.append(connect(port, sources[n % len(sources)]))
        except OSError:
            pass
    stop = threading.Event()

    def trickling():
        head = b"GET / HTTP/1.1\r\n" + b"X-Slow: " + b"a" * 100_000
        for i in range(len(head)):
            for sock in sockets:
                try:
                    sock.send(head[i:i + 1])
                except OSError:
                    pass
            if stop.wait(1):
                return

    thread = threading.Thread(target=trickling, daemon=True)
    if trickle:
        thread.start()

    def release():
        stop.set()
        if trickle:
            thread.join(10)
        for sock in sockets:
            sock.close()

    return release


def seconds(value):
    return "-" if value is None else f"{value:.3f} s"


def show(name, figures):
    print(f"{name:<34} health p50 {seconds(figures['p50']):>10}  "
          f"max {seconds(figures['max']):>10}  unanswered {figures['unanswered']}", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle", type=int, default=250)
    parser.add_argument("--slowloris", type=int, default=250)
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--probe-timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    env = {"ALLOWED_HOSTS": "127.0.0.1"}
    with Harness(env=env, label="connections") as harness:
        harness.setup()
        harness.start_server()
        port = harness.port
        show("alone", probes(port, args.probes, args.probe_timeout))
        for name, count, sources, trickle in (
                (f"{args.idle} idle, one address", args.idle, ["127.0.0.1"], False),
                (f"{args.slowloris} slowloris, 10 addresses", args.slowloris, SPREAD_OVER,
                 True),
                (f"{args.slowloris} idle, 10 addresses", args.slowloris, SPREAD_OVER,
                 False)):
            release = hold(port, count, sources, trickle)
            try:
                time.sleep(1)
                show(name, probes(port, args.probes, args.probe_timeout))
            finally:
                release()
            time.sleep(2)  # the server reads the ends of the released connections
        log("done")


if __name__ == "__main__":
    main()
