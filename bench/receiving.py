"""How to hash a request body while it arrives: the designs compared in one process.

A "receiver" thread stands for waitress's I/O thread: it appends the body to a
``SpoolBuffer`` in ``recv``-sized pieces as fast as it can (the bytes come from memory,
so the receiver is faster than any network here, which is the hard case for the hasher).
For each design it prints the receiver's time per GiB (what waitress's loop spends per
body: every other connection waits meanwhile), the time until the digest is ready after
the last byte (what the app waits for), and the hasher's CPU:

* ``queue``      the follower takes every piece from memory (unbounded queue);
* ``file``       the follower reads every byte back from the spool (page cache);
* ``hybrid``     memory while it keeps up, the spool when it falls behind (QUEUE_MAX):
                 what the server does;
* ``in-parser``  the parser hashes each piece itself, on the receiver's thread.

Reference: ``dd if=/dev/zero of=FILE bs=256K count=… conv=fsync`` is not the point here
(no disk wait is timed: the spool is in the page cache); the reference printed is the
receiver writing the same pieces to a plain file with no hashing at all.

    .venv/bin/python bench/receiving.py               # 1 GiB, 3 rounds
    .venv/bin/python bench/receiving.py --size 256MiB --rounds 1
"""

import argparse
import hashlib
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from collector.archives.uploads import receiving  # noqa: E402

PIECE = 256 * 1024  # waitress's recv_bytes in collector serve


def parse_size(text):
    units = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
    for unit, factor in units.items():
        if text.endswith(unit):
            return int(float(text[:-len(unit)]) * factor)
    return int(text)


def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(design, directory, size, pieces):
    queue_max = {"queue": 1 << 62, "file": 0, "hybrid": receiving.QUEUE_MAX}.get(design)
    saved = receiving.QUEUE_MAX
    if queue_max is not None:
        receiving.QUEUE_MAX = queue_max
    try:
        if design == "in-parser":
            buffer = receiving.SpoolBuffer(directory, None)
            sha256 = hashlib.sha256()
        else:
            buffer = receiving.SpoolBuffer(directory, receiving.RawPlan(size))
        started, cpu_started = time.perf_counter(), cpu()
        for piece in pieces:
            buffer.append(piece)
            if design == "in-parser":
                sha256.update(piece)
        received = time.perf_counter()
        buffer.complete()
        if design == "in-parser":
            digest = sha256.hexdigest()
        else:
            digest = buffer.digest(timeout=600).sha256
        ready = time.perf_counter()
        cpu_used = cpu() - cpu_started
        buffer.close()
    finally:
        receiving.QUEUE_MAX = saved
    return {"receive": received - started, "wait": ready - received, "cpu": cpu_used,
            "digest": digest}


def plain_write(directory, pieces):
    fd, name = tempfile.mkstemp(dir=directory)
    os.unlink(name)
    started, offset = time.perf_counter(), 0
    for piece in pieces:
        offset += os.pwrite(fd, piece, offset)
    elapsed = time.perf_counter() - started
    os.close(fd)
    return elapsed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1GiB")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    size = parse_size(args.size)
    block = os.urandom(16 * 1024 * 1024)
    pieces = [block[i % len(block):i % len(block) + PIECE]
              for i in range(0, size, PIECE)]
    size = sum(len(p) for p in pieces)
    want = hashlib.sha256()
    for piece in pieces:
        want.update(piece)
    want = want.hexdigest()
    print(f"load average at start: {os.getloadavg()[0]:.2f}; {size / 2**30:.2f} GiB in "
          f"{PIECE // 1024} KiB pieces, {args.rounds} round(s), medians of the rounds",
          flush=True)
    (REPO / "var").mkdir(exist_ok=True)
    designs = ["in-parser", "queue", "file", "hybrid"]
    results = {design: [] for design in designs}
    plain = []
    with tempfile.TemporaryDirectory(dir=REPO / "var", prefix="bench-receiving-") as tmp:
        for _ in range(args.rounds):
            plain.append(plain_write(tmp, pieces))
            for design in designs:  # interleaved: one of each per round
                result = run(design, tmp, size, pieces)
                if result["digest"] != want:
                    raise SystemExit(f"{design}: wrong sha256")
                results[design].append(result)
    gib = size / 2**30
    print(f"\n{'design':<11} {'receiver s/GiB':>15} {'wait after last byte s':>23} "
          f"{'CPU s/GiB':>10}")
    print(f"{'(plain write)':<11} {statistics.median(plain) / gib:>15.3f} {'':>23} {'':>10}")
    for design in designs:
        rows = results[design]
        receive = statistics.median(r["receive"] for r in rows) / gib
        wait = statistics.median(r["wait"] for r in rows)
        used = statistics.median(r["cpu"] for r in rows) / gib
        print(f"{design:<11} {receive:>15.3f} {wait:>23.3f} {used:>10.3f}")
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
