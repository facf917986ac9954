#!/usr/bin/env python3
"""Upload and download throughput with archives on S3, beside the local disk and beside
boto3 itself against the same S3 server, in the same run.

    .venv/bin/python bench/s3.py [--size 1GiB | --sizes 1GiB,3GiB] [--big]
                                 [--db sqlite|postgresql] [--repeat N]

``--big`` is ``--sizes 1GiB,3GiB``. The S3 server is moto's standalone server
(tests/s3server.py: ``moto[server]``, started on 127.0.0.1, stopped by its PID). For each
size one random file is generated, then:

* reference: boto3 ``upload_file`` and ``download_file`` of the file to and from the same
  moto server: the upload with boto3's defaults (8 MiB parts, up to 10 threads), the
  download as one GET (boto3's default of 10 parallel ranged GETs would have moto read
  the whole object into memory for each of them: gigabytes at once);
* local backend: a fresh ``collector serve`` with ``DATA_DIR/archives``; ``curl -F`` upload
  (one request, ``Upload-Token``) and ``curl -o /dev/null`` download (bearer token);
* S3 backend: a fresh ``collector serve`` with ``STORAGE_URL=s3://…`` on the same moto
  server; the same upload, the streamed download (``STORAGE_DOWNLOAD=stream``), and then,
  restarted with ``STORAGE_DOWNLOAD=redirect``, the download as a client does it: the
  ``302`` from the app, then a GET of the presigned URL;
* the peak RSS (``VmHWM``, reset just after startup) of each server, so that 1 GiB and
  3 GiB can be compared.

Every upload's sha256 is checked against the file's. Read the figures knowing what moto
is: an in-memory S3 written in Python, one process, on the same 2 CPUs as the app and
curl; it is the ceiling here, and MinIO or S3 would move the ceiling (see the boto3 rows).
"""

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import boto3.s3.transfer  # noqa: E402
from s3server import ENVIRON, S3Server  # noqa: E402
from upload_download import (  # noqa: E402
    MB,
    Harness,
    MiB,
    curl,
    curl_download,
    handle_signals,
    human,
    log,
    make_random_file,
    median_run,
    parse_size,
    proc_cpu,
    proc_status,
    reset_hwm,
    settle,
    sha256_of,
)


def boto3_reference(s3, path, size, repeat):
    """(upload MB/s, download MB/s) of boto3's managed transfers, medians."""
    client = s3.client()
    name = f"bench-reference/{path.name}"
    target = path.with_suffix(".down")
    ups, downs = [], []
    single_get = boto3.s3.transfer.TransferConfig(multipart_threshold=size + 1)
    try:
        for attempt in range(repeat):
            settle()
            started = time.perf_counter()
            client.upload_file(str(path), s3.bucket, name)
            ups.append((size / (time.perf_counter() - started) / MB,))
            settle()
            started = time.perf_counter()
            client.download_file(s3.bucket, name, str(target), Config=single_get)
            downs.append((size / (time.perf_counter() - started) / MB,))
            target.unlink()
            log(f"boto3 {attempt + 1}: upload {ups[-1][0]:.0f} MB/s, "
                f"download {downs[-1][0]:.0f} MB/s")
    finally:
        target.unlink(missing_ok=True)
        client.delete_object(Bucket=s3.bucket, Key=name)
    return median_run(ups)[0], median_run(downs)[0]


def upload(harness, path, size, expected, token):
    response = harness.dir / "upload.json"
    code, _, _, elapsed = curl("-o", str(response), "-H", f"Upload-Token: {token}",
                               "-F", f"file=@{path};filename=bench-{human(size)}.bin",
                               f"{harness.base}/api/v1/archives/")
    body = response.read_text()
    if code != 201:
        raise RuntimeError(f"upload answered {code}: {body[:500]}")
    archive = json.loads(body)
    if archive["sha256"] != expected or archive["size"] != size:
        raise RuntimeError(f"upload stored a different file: {archive}")
    return archive, size / elapsed / MB


def download(harness, archive, size, redirect=False):
    """MB/s of one download; with ``redirect``, the app's 302 and the presigned GET."""
    url = f"{harness.base}/api/v1/archives/{archive['id']}/download"
    auth = f"Authorization: Bearer {harness.token}"
    if not redirect:
        code, _, down, elapsed = curl_download(url, [auth])
    else:
        started = time.perf_counter()
        status, headers, _ = harness.request("GET", url.removeprefix(harness.base),
                                             headers={"Authorization": auth.split(": ")[1]})
        if status != 302:
            raise RuntimeError(f"redirect mode answered {status}")
        # The presigned URL needs (and gets) no credentials of ours.
        code, _, down, _ = curl_download(headers["Location"])
        elapsed = time.perf_counter() - started
    if code != 200 or down != size:
        raise RuntimeError(f"download answered {code} with {down} bytes")
    return size / elapsed / MB


def measure(harness, path, size, expected, repeat, modes):
    """Upload and download figures of one fresh server (and its peak RSS)."""
    pid = harness.start_server()
    reset_ok = reset_hwm(pid)
    ticket = harness.create_ticket(number=int(time.time() * 1000) % 10**9, attempts=1000)
    result = {"cpu": 0.0}
    try:
        ups, archive = [], None
        for attempt in range(repeat):
            if archive is not None:
                harness.api("DELETE", f"/api/v1/archives/{archive['id']}/", expect=(204,))
            settle()
            cpu = proc_cpu(pid)
            archive, rate = upload(harness, path, size, expected, ticket["token"])
            ups.append((rate, proc_cpu(pid) - cpu))
            log(f"{harness.label} upload {attempt + 1}: {rate:.0f} MB/s, "
                f"server CPU {ups[-1][1]:.1f} s")
        result["upload"] = median_run(ups)
        for mode in modes:
            if mode == "redirect":
                harness.stop_server()
                harness.extra_env["STORAGE_DOWNLOAD"] = "redirect"
                pid = harness.start_server()
            downs = []
            for attempt in range(repeat):
                settle(0.5)
                cpu = proc_cpu(pid)
                rate = download(harness, archive, size, redirect=mode == "redirect")
                downs.append((rate, proc_cpu(pid) - cpu))
                log(f"{harness.label} download ({mode}) {attempt + 1}: {rate:.0f} MB/s, "
                    f"server CPU {downs[-1][1]:.1f} s")
            result[mode] = median_run(downs)
            if mode == "stream":
                # Before a restart for redirects: the peak of uploads and streamed downloads.
                result["hwm"] = proc_status(pid, "VmHWM") or 0
                result["hwm_reset"] = reset_ok
        harness.api("DELETE", f"/api/v1/archives/{archive['id']}/", expect=(204,))
    finally:
        harness.extra_env.pop("STORAGE_DOWNLOAD", None)
        harness.stop_server()
    return result


def print_report(results, db):
    print()
    print(f"Logs Collector on S3 (moto's in-memory Python server on 127.0.0.1) — db={db}, "
          f"client=curl, {os.cpu_count()} CPUs; MB = 10^6 bytes; median of the runs")
    since = "since a reset after startup" if all(
        r[k]["hwm_reset"] for r in results for k in ("local", "s3")) else "since startup"
    print(f"server RSS: the server's VmHWM {since}, over its uploads and streamed downloads")
    header = f"{'size':>6} {'what':<38} {'upload':>11} {'download':>11} {'server RSS':>11}"
    print(header)
    print("-" * len(header))
    for r in results:
        size = human(r["size"])
        rows = [
            ("boto3 upload_file / download_file", r["boto3"][0], r["boto3"][1], None),
            ("local backend (curl, stream)", r["local"]["upload"][0],
             r["local"]["stream"][0], r["local"]["hwm"]),
            ("S3 backend (curl, stream)", r["s3"]["upload"][0], r["s3"]["stream"][0],
             r["s3"]["hwm"]),
            ("S3 backend, redirect (302 + GET)", None, r["s3"]["redirect"][0], None),
        ]
        for name, up, down, rss in rows:
            print(f"{size:>6} {name:<38} "
                  f"{'' if up is None else f'{up:.0f} MB/s':>11} "
                  f"{'' if down is None else f'{down:.0f} MB/s':>11} "
                  f"{'' if rss is None else f'{rss / MB:.0f} MB':>11}")
            size = ""
        s3 = r["s3"]
        print(f"{'':>6} {'  S3 vs boto3':<38} {s3['upload'][0] / r['boto3'][0]:>10.2f}x "
              f"{s3['stream'][0] / r['boto3'][1]:>10.2f}x")
        print(f"{'':>6} {'  server CPU s (S3 upload / stream)':<38} "
              f"{s3['upload'][1]:>9.1f} s {s3['stream'][1]:>9.1f} s")
        print()
    if len(results) > 1:
        for kind in ("local", "s3"):
            listing = ", ".join(f"{human(r['size'])}: {r[kind]['hwm'] / MB:.0f} MB"
                                for r in results)
            spread = (max(r[kind]["hwm"] for r in results)
                      - min(r[kind]["hwm"] for r in results)) / MB
            print(f"peak RSS ({kind} backend) by size: {listing} — spread {spread:.0f} MB")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1GiB", help="file size (default 1GiB)")
    parser.add_argument("--sizes", help="comma list, e.g. 1GiB,3GiB (overrides --size)")
    parser.add_argument("--big", action="store_true", help="the same as --sizes 1GiB,3GiB")
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per measurement (the median is reported)")
    args = parser.parse_args(argv)
    sizes = [parse_size(s) for s in
             ("1GiB,3GiB" if args.big else args.sizes or args.size).split(",") if s.strip()]
    if not shutil.which("curl"):
        raise SystemExit("curl is required (apt-get install -y curl)")
    largest = max(sizes)
    # The file, waitress's spool, the local archive; moto spools objects and parts to disk.
    needed = 5 * largest + 512 * MiB
    free = shutil.disk_usage(HERE.parent).free
    if free < needed:
        raise SystemExit(f"need {needed / 1024**3:.1f} GiB free next to the repo, "
                         f"have {free / 1024**3:.1f} GiB")
    env = {"UPLOAD_MAX_SIZE": str(max(largest + MiB, 4 * 1024**3)),
           "STORAGE_RESERVE": "256MiB", **ENVIRON}
    results = []
    with handle_signals(), Harness(args.db, env=env, label="s3") as scratch:
        # moto spools big objects to temporary files: next to the repo, removed with it.
        os.environ["TMPDIR"] = str(scratch.dir)
        s3 = S3Server(scratch.dir / "moto.log")
        log(f"moto server pid {s3.process.pid} on {s3.endpoint}")
        try:
            s3_env = {"STORAGE_URL": f"s3://{s3.bucket}/bench",
                      "STORAGE_ENDPOINT_URL": s3.endpoint, "STORAGE_REGION": "us-east-1",
                      "STORAGE_QUOTA": "1TiB"}
            with Harness(args.db, env=env, label="local") as local, \
                    Harness(args.db, env={**env, **s3_env}, label="s3") as remote:
                local.setup()
                remote.setup()
                for size in sizes:
                    path = scratch.dir / f"random-{human(size)}.bin"
                    log(f"generating {human(size)} of random bytes in {path}")
                    make_random_file(path, size)
                    expected = sha256_of(path)
                    try:
                        results.append({
                            "size": size,
                            "boto3": boto3_reference(s3, path, size, args.repeat),
                            "local": measure(local, path, size, expected, args.repeat,
                                             ["stream"]),
                            "s3": measure(remote, path, size, expected, args.repeat,
                                          ["stream", "redirect"]),
                        })
                    finally:
                        path.unlink(missing_ok=True)
                print_report(results, args.db)
                for harness in (local, remote):
                    warnings = [line for line in harness.server_log().splitlines()
                                if "ERROR" in line or "Traceback" in line]
                    if warnings:
                        print(f"{harness.label} server log errors:")
                        print("\n".join(warnings[-20:]))
        finally:
            s3.stop()
            log(f"stopped moto server pid {s3.process.pid}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted; cleaned up")
        sys.exit(130)
