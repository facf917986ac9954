#!/usr/bin/env python3
"""Looking inside a .tar.gz kept on S3: ranged GETs (what the app does) against a local
copy (what a cache would do), beside the local disk, in the same run.

    .venv/bin/python bench/s3_inspect.py [--size-mib 300] [--reads 20]

A ``.tar.gz`` holding log files of ``--size-mib`` MiB of text in total is generated in a
temporary directory and put into a bucket of moto's S3 server (tests/s3server.py, started
on 127.0.0.1 and stopped by its PID). Then, for the local file and for the object read
through ``S3ArchiveStorage.open`` (ranged GETs with a read-ahead window):

* index: the one pass that lists the members and records the gzip seek points;
* ``--reads`` random members read whole through the seek points;

and, for a cache, the time to download the whole object first. GETs and the bytes they
asked for are counted. Figures depend on the server: moto keeps objects in memory in one
Python process, so its per-request cost is higher and its throughput lower than MinIO's
or AWS's within a region.
"""

import argparse
import io
import os
import random
import sys
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from s3server import ENVIRON, S3Server  # noqa: E402

from collector.archives.inspect import formats, index, reader  # noqa: E402
from collector.archives.storage import make_backend  # noqa: E402

MiB = 1024 * 1024
WORDS = ("error warning info debug kernel eth0 link up down timeout retry connection "
         "refused accepted user session started stopped disk full ok pid memory").split()


def generate(path, size, rng):
    """A tar.gz of log files (a few KiB to 20 MiB each) holding ``size`` bytes of text."""
    written, n = 0, 0
    with tarfile.open(path, "w:gz", compresslevel=6) as archive:
        while written < size:
            length = min(size - written, int(rng.choice([4096, 65536, MiB, 5 * MiB, 20 * MiB])))
            lines, got = [], 0
            while got < length:
                line = (f"2026-12-07T07:{n % 60:02d}:00 host{n % 7} "
                        + " ".join(rng.choices(WORDS, k=12)) + f" {rng.random()}\n")
                lines.append(line)
                got += len(line)
            data = "".join(lines).encode()[:length]
            info = tarfile.TarInfo(f"var/log/app-{n:05d}.log")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
            written += len(data)
            n += 1


def timed(function):
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def read_members(source, seek_points, members):
    total = 0
    for member in members:
        with reader.open_stored(source, "tar.gz", member, seek_points) as stream:
            while True:
                data = stream.read(MiB)
                if not data:
                    break
                total += len(data)
    return total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=300)
    parser.add_argument("--reads", type=int, default=20)
    args = parser.parse_args()
    os.environ.update(ENVIRON)
    rng = random.Random(7)
    limits = index.Limits(max_bytes=64 << 30, max_ratio=1000.0, max_members=200_000)
    with tempfile.TemporaryDirectory(prefix="bench-s3-inspect-") as tmp:
        path = os.path.join(tmp, "logs.tar.gz")
        seconds, _ = timed(lambda: generate(path, args.size_mib * MiB, rng))
        size = os.path.getsize(path)
        print(f"archive: {size / MiB:.1f} MiB compressed, {args.size_mib} MiB of text "
              f"(generated in {seconds:.1f} s)")
        server = S3Server(os.path.join(tmp, "moto.log"))
        try:
            backend = make_backend({"data_dir": os.path.join(tmp, "data"),
                                    **server.settings(quota=1 << 40)})
            client = server.client()
            name = f"{backend.prefix}archives/ab/ab{'0' * 30}"
            seconds, _ = timed(lambda: client.upload_file(path, server.bucket, name))
            print(f"boto3 upload_file to the server: {seconds:.2f} s "
                  f"({size / MiB / seconds:.0f} MB/s)")
            seconds, _ = timed(lambda: client.download_file(
                server.bucket, name, os.path.join(tmp, "cached.tar.gz")))
            print(f"cache fill (download_file of the whole object): {seconds:.2f} s "
                  f"({size / MiB / seconds:.0f} MB/s), {size / MiB:.0f} MiB of local disk")

            gets = []
            get_object = backend.client.get_object

            def counting(**kwargs):
                first, last = kwargs["Range"].removeprefix("bytes=").split("-")
                gets.append(int(last) - int(first) + 1)
                return get_object(**kwargs)

            backend.client.get_object = counting
            key = "ab" + "0" * 30
            s3_source = formats.Source(lambda: backend.open(key), size)
            results = {}
            for label, source in (("local disk", path), ("S3 ranged GETs", s3_source)):
                seek_points = os.path.join(tmp, f"{label.split()[0]}.gzidx")
                del gets[:]
                build, result = timed(lambda: index.build(source, "logs.tar.gz", limits,
                                                          seek_points))
                build_gets, build_bytes = len(gets), sum(gets)
                members = rng.sample(result.members, min(args.reads, len(result.members)))
                del gets[:]
                read, total = timed(lambda: read_members(source, seek_points, members))
                results[label] = (build, read)
                print(f"{label:15} index {build:6.2f} s ({size / MiB / build:5.1f} MB/s "
                      f"compressed; {build_gets} GETs, {build_bytes / MiB:.0f} MiB asked)"
                      f" | {len(members)} random members ({total / MiB:.1f} MiB): "
                      f"{read:5.2f} s, {read / len(members) * 1000:.0f} ms each; "
                      f"{len(gets)} GETs, {sum(gets) / MiB:.1f} MiB asked")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
