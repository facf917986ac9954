#!/usr/bin/env python3
"""Looking inside a big .tar.gz: index time, viewing the last member, search throughput.

    .venv/bin/python bench/archive_inspect.py [--size 1GiB] [--files 10000] [--repeat N]
                                              [--db sqlite|postgresql] [--regenerate]

A generated ``.tar.gz`` of ``--size`` (compressed) holding ``--files`` log files, from a few
lines to tens of MB each, is uploaded to a real ``collector serve`` (started, set up and
stopped as ``upload_download.py`` does it). Then, against it:

* index: from the first look (503 while it builds) to the member list (200), as MB/s of
  compressed input; reference: ``gzip -dc archive > /dev/null``, the one pass it needs;
* the first page of the last member once the index exists: the viewer page (HTML) and the
  API's lines; target under 1 s;
* search of the whole archive for a rare word (every hit must be found), as MB/s of
  uncompressed text; reference: ``zcat archive | grep -c word`` in the same run; target at
  least 0.5 x.

The archive is generated once and cached under the repository's ``var/bench-inspect-cache/``
(gitignored; ``--regenerate`` makes it again); everything else lives in a temporary
directory under ``var/`` that is removed at the end, also on failure or Ctrl-C, with the
server stopped by its PID.
"""

import os
import sys

# The harness (upload_download.py) is loaded by file name, with this directory taken off
# sys.path, so that no file here can ever shadow a standard-library module.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path
               if os.path.abspath(entry or os.curdir) != HERE]

import argparse  # noqa: E402
import gzip  # noqa: E402
import importlib.util  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tarfile  # noqa: E402
import time  # noqa: E402
import urllib.parse  # noqa: E402

_spec = importlib.util.spec_from_file_location("upload_download",
                                               os.path.join(HERE, "upload_download.py"))
harness = importlib.util.module_from_spec(_spec)
sys.modules["upload_download"] = harness
_spec.loader.exec_module(harness)
MB, MiB, REPO, log = harness.MB, harness.MiB, harness.REPO, harness.log

CACHE = REPO / "var" / "bench-inspect-cache"
GENERATOR_VERSION = 1  # change when the generated content changes: a new cache file
NEEDLE = b"OutOfMemoryError"
NEEDLE_FILES = 40  # files that get one planted line (plus the last member)
SMALLEST, LARGEST = 150, 48 * MiB
LAST_MEMBER = 24 * MiB
LAST_PATH = "node9/var/log/app/last-member.log"
TARGET_VIEW_S = 1.0
TARGET_SEARCH_RATIO = 0.5
VIEW_RUNS = 5

COMPONENTS = [b"kernel", b"sshd", b"nginx", b"app.worker", b"db.pool", b"scheduler",
              b"cron", b"systemd", b"storage.node3", b"api.gateway", b"auth", b"backup"]
LEVELS = [b"INFO"] * 8 + [b"DEBUG"] * 5 + [b"WARN"] * 2 + [b"ERROR"]
MESSAGES = [
    b"request %(id)s GET /api/v1/items/%(n)d took %(ms)d ms status=200",
    b"request %(id)s POST /api/v1/orders took %(ms)d ms status=201 bytes=%(n)d",
    b"connection from 10.%(a)d.%(b)d.%(c)d port %(port)d accepted",
    b"session %(id)s closed after %(n)d s (user u%(a)d)",
    b"checkpoint complete: wrote %(n)d buffers (%(b)d.%(c)d%%); %(ms)d ms",
    b"worker %(a)d picked job %(id)s from queue default (%(n)d waiting)",
    b"cache miss for key item:%(n)d, loaded in %(ms)d ms",
    b"disk /dev/sd%(letter)s1 usage %(b)d%%, %(n)d inodes free",
    b"retrying upstream 10.%(a)d.%(b)d.%(c)d:%(port)d in %(ms)d ms (attempt %(c)d)",
    b"temperature sensor %(a)d reads %(b)d.%(c)d C",
    b"backup of volume vol-%(id)s: %(n)d files, %(ms)d ms",
    b"TLS handshake with 192.168.%(a)d.%(b)d failed: unknown ca",
]


def _pool(rng, lines=400_000):
    """A block of varied log lines; files are cut from it (generation must be fast)."""
    out = []
    for i in range(lines):
        values = {"id": b"%08x" % rng.getrandbits(32), "n": rng.randrange(1, 10**6),
                  "ms": rng.randrange(1, 5000), "a": rng.randrange(256),
                  "b": rng.randrange(100), "c": rng.randrange(10),
                  "port": rng.randrange(1024, 65536), "letter": rng.choice(b"abcd")}
        values["letter"] = bytes([values["letter"]])
        values = {key.encode(): value for key, value in values.items()}
        stamp = b"2026-11-%02d %02d:%02d:%02d.%03d" % (
            1 + i * 30 // lines, rng.randrange(24), rng.randrange(60), rng.randrange(60),
            rng.randrange(1000))
        out.append(b"%s %s [%s] %s\n" % (stamp, rng.choice(LEVELS), rng.choice(COMPONENTS),
                                        rng.choice(MESSAGES) % values))
    return b"".join(out)


def _sizes(rng, count, total):
    """``count`` file sizes from SMALLEST to LARGEST, mostly small, summing to ~``total``:
    ``SMALLEST * (LARGEST/SMALLEST) ** (u ** k)`` with the skew ``k`` found by bisection."""
    draws = [rng.random() for _ in range(count)]
    span = LARGEST / SMALLEST

    def total_for(k):
        return sum(SMALLEST * span ** (u ** k) for u in draws)

    low, high = 1.0, 64.0
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if total_for(middle) > total else (low, middle)
    return [int(SMALLEST * span ** (u ** high)) for u in draws]


def _content(rng, pool, size):
    out, left = [], size
    while left > 0:
        start = pool.find(b"\n", rng.randrange(len(pool) - 1)) + 1
        piece = pool[start:start + left]
        cut = piece.rfind(b"\n") + 1
        if cut == 0:
            break
        out.append(piece[:cut])
        left -= cut
    return b"".join(out) or pool[:pool.find(b"\n") + 1]


def _plant(data, where):
    """One line with the needle after line ``where`` (0..1 of the way through)."""
    at = data.find(b"\n", int(len(data) * where)) + 1
    line = b"2026-11-30 23:59:59.999 ERROR [app.worker] java.lang.%s: Java heap space\n" % NEEDLE
    return data[:at] + line + data[at:]


def _paths(rng, count):
    services = ["syslog", "kern", "auth", "nginx/access", "nginx/error", "app/worker",
                "app/api", "postgresql/postgresql-15-main", "backup/run", "storage/node"]
    paths = []
    for i in range(count - 1):
        node, service = rng.randrange(1, 9), rng.choice(services)
        paths.append(f"node{node}/var/log/{service}.{i}.log")
    paths.append(LAST_PATH)
    return paths


def estimate_ratio(pool):
    sample = pool[:32 * MiB]
    return len(sample) / len(gzip.compress(sample, compresslevel=1))


def generate(path, size, files, seed):
    """Write the archive (tar, through ``gzip -1`` on a second core); return its facts."""
    rng = random.Random(seed)
    started = time.perf_counter()
    pool = _pool(rng)
    ratio = estimate_ratio(pool)
    total = int(size * ratio)
    sizes = _sizes(rng, files - 1, total - LAST_MEMBER) + [LAST_MEMBER]
    planted = set(rng.sample(range(files - 1), NEEDLE_FILES)) | {files - 1}
    log(f"generating {files} files, {total / MB:.0f} MB of logs (gzip -1 ratio "
        f"{ratio:.1f}), largest {max(sizes) / MB:.1f} MB, into {path}")
    partial = path.with_suffix(".part")
    with open(partial, "wb") as out:
        zipper = subprocess.Popen(["gzip", "-1", "-c"], stdin=subprocess.PIPE, stdout=out)
        uncompressed = 0
        try:
            with tarfile.open(fileobj=zipper.stdin, mode="w|", format=tarfile.GNU_FORMAT) \
                    as tar:
                pairs = zip(_paths(rng, files), sizes, strict=True)
                for index, (name, member_size) in enumerate(pairs):
                    data = _content(rng, pool, member_size)
                    if index in planted:
                        data = _plant(data, 0.05 if index == files - 1 else rng.random())
                    info = tarfile.TarInfo(name)
                    info.size, info.mtime, info.mode = len(data), 1_796_000_000 + index, 0o644
                    tar.addfile(info, io.BytesIO(data))
                    uncompressed += len(data)
            zipper.stdin.close()
        finally:
            if zipper.wait() != 0:
                raise RuntimeError("gzip -1 failed")
    facts = {"files": files, "planted": len(planted), "needle": NEEDLE.decode(),
             "logs_bytes": uncompressed, "size": partial.stat().st_size,
             "last_member": LAST_PATH, "seed": seed,
             "generator": GENERATOR_VERSION}
    os.replace(partial, path)
    path.with_suffix(".json").write_text(json.dumps(facts))
    log(f"generated {facts['size'] / MB:.0f} MB in {time.perf_counter() - started:.0f} s")
    return facts


def cached_archive(size, files, seed, regenerate):
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"logs-{harness.human(size)}-{files}-seed{seed}-v{GENERATOR_VERSION}.tar.gz"
    facts_path = path.with_suffix(".json")
    if path.exists() and facts_path.exists() and not regenerate:
        log(f"using the cached {path}")
        return path, json.loads(facts_path.read_text())
    return path, generate(path, size, files, seed)


# --- references ------------------------------------------------------------------------------

def timed(command):
    started = time.perf_counter()
    result = subprocess.run(command, check=False, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    return result, elapsed


def gunzip_reference(path):
    result, elapsed = timed(["sh", "-c", 'gzip -dc -- "$1" > /dev/null', "sh", str(path)])
    if result.returncode:
        raise RuntimeError(f"gzip -dc failed: {result.stderr}")
    return elapsed


def grep_reference(path, needle):
    """``zcat archive | grep -c needle``: (count, seconds)."""
    result, elapsed = timed(["sh", "-c", 'zcat -- "$1" | grep -c -- "$2"', "sh", str(path),
                             needle])
    if result.returncode not in (0, 1):
        raise RuntimeError(f"zcat | grep failed: {result.stderr}")
    return int(result.stdout.strip() or 0), elapsed


# --- against the server ----------------------------------------------------------------------

def get(h, path, expect=(200,)):
    started = time.perf_counter()
    status, headers, body = h.request("GET", path, headers={
        "Authorization": f"Bearer {h.token}"}, timeout=3600)
    elapsed = time.perf_counter() - started
    if status not in expect:
        raise RuntimeError(f"GET {path}: {status} {body[:300]!r}")
    return status, body, elapsed


def measure(h, archive_path, facts, repeat):
    result = {}
    ticket = h.create_ticket(number=1, attempts=100)
    code, _, _, upload_s = harness.curl(
        "-o", str(h.dir / "upload.json"), "-H", f"Upload-Token: {ticket['token']}",
        "-F", f"file=@{archive_path};filename=logs.tar.gz", f"{h.base}/api/v1/archives/")
    if code != 201:
        raise RuntimeError(f"upload answered {code}: {(h.dir / 'upload.json').read_text()}")
    archive_id = json.loads((h.dir / "upload.json").read_text())["id"]
    result["upload_s"] = upload_s
    log(f"uploaded archive {archive_id} in {upload_s:.1f} s")

    members = f"/api/v1/archives/{archive_id}/members/?limit=1"
    started = time.perf_counter()
    status, _, _ = get(h, members, expect=(503,))
    while status == 503:
        time.sleep(0.2)
        status, _, _ = get(h, members, expect=(200, 503))
    result["index_s"] = time.perf_counter() - started
    status, headers, _ = h.request("GET", members, headers={
        "Authorization": f"Bearer {h.token}"})
    total = int(headers["X-Total-Count"])
    if total != facts["files"]:
        raise RuntimeError(f"the index lists {total} members, the archive has {facts['files']}")
    log(f"index of {total} members built in {result['index_s']:.1f} s")

    _, body, _ = get(h, f"/api/v1/archives/{archive_id}/members/?limit=1&offset={total - 1}")
    last = json.loads(body)[0]["path"]
    if last != facts["last_member"]:
        raise RuntimeError(f"last member is {last}, expected {facts['last_member']}")
    quoted = urllib.parse.quote(last)
    views, lines = [], []
    for _ in range(VIEW_RUNS):
        _, page, elapsed = get(h, f"/archives/{archive_id}/view/{quoted}")
        if b'id="L1"' not in page:
            raise RuntimeError("the viewer page shows no line 1")
        views.append(elapsed)
        _, body, elapsed = get(h, f"/api/v1/archives/{archive_id}/lines/{quoted}?count=200")
        if len(json.loads(body)["lines"]) != 200:
            raise RuntimeError("the lines endpoint gave fewer than 200 lines")
        lines.append(elapsed)
    result.update(view_first=views[0], view_median=statistics.median(views),
                  lines_first=lines[0], lines_median=statistics.median(lines))
    log(f"last member's first page: viewer {views[0]:.3f} s first, "
        f"{result['view_median']:.3f} s median; API lines {lines[0]:.3f} s first")

    searches, greps = [], []
    query = urllib.parse.urlencode({"q": facts["needle"], "limit": 1000})
    for attempt in range(repeat):
        count, grep_s = grep_reference(archive_path, facts["needle"])
        if count != facts["planted"]:
            raise RuntimeError(f"grep -c found {count}, {facts['planted']} were planted")
        greps.append(grep_s)
        _, body, search_s = get(h, f"/api/v1/archives/{archive_id}/search?{query}")
        found = json.loads(body)
        if found["results"] != facts["planted"] or found["truncated"]:
            raise RuntimeError(f"search found {found['results']} of {facts['planted']} "
                               f"(truncated: {found['reason']})")
        searches.append((search_s, found["bytes_scanned"]))
        log(f"search {attempt + 1}: {found['bytes_scanned'] / MB:.0f} MB in {search_s:.1f} s "
            f"({found['results']} hits); zcat | grep -c: {grep_s:.1f} s")
    result["search_s"], result["search_bytes"] = sorted(searches)[(len(searches) - 1) // 2]
    result["grep_s"] = statistics.median(greps)
    _, page, result["page_search_s"] = get(h, f"/archives/{archive_id}/search?{query}")
    if page.count(b'class="hit') != facts["planted"]:
        raise RuntimeError("the search page does not show every hit")
    result["hwm"] = harness.proc_status(h.proc.pid, "VmHWM") or 0
    return result


def report(facts, refs, r, db):
    compressed, logs_bytes = facts["size"], facts["logs_bytes"]
    text_bytes = r["search_bytes"]  # member text searched, decompressed
    index_rate = compressed / r["index_s"] / MB
    gunzip_rate = compressed / refs["gunzip_s"] / MB
    search_rate = text_bytes / r["search_s"] / MB
    grep_rate = logs_bytes / r["grep_s"] / MB
    ratio = search_rate / grep_rate
    print()
    print(f"Logs Collector inspect benchmark — db={db}, {os.cpu_count()} CPUs, MB = 10^6 bytes")
    print(f"archive: {compressed / MB:.0f} MB .tar.gz, {facts['files']} files, "
          f"{logs_bytes / MB:.0f} MB of logs; search word {facts['needle']!r} on "
          f"{facts['planted']} lines")
    header = f"{'metric':<34} {'value':>12} {'reference':>28} {'ratio':>6}  {'target':<12} result"
    print(header)
    print("-" * len(header))
    rows = [
        ("upload (curl -F, one POST)", f"{compressed / r['upload_s'] / MB:.0f} MB/s", "", "",
         "", ""),
        ("index build (compressed input)", f"{index_rate:.0f} MB/s",
         f"gzip -dc >/dev/null {gunzip_rate:.0f} MB/s", f"{index_rate / gunzip_rate:.2f}",
         "(one pass)", ""),
        ("  index time", f"{r['index_s']:.1f} s", f"gzip -dc {refs['gunzip_s']:.1f} s", "",
         "", ""),
        ("last member, first page (viewer)", f"{r['view_first']:.3f} s",
         f"median of {VIEW_RUNS}: {r['view_median']:.3f} s", "", f"< {TARGET_VIEW_S:g} s",
         harness.verdict(r["view_first"] < TARGET_VIEW_S)),
        ("  same through API lines", f"{r['lines_first']:.3f} s",
         f"median: {r['lines_median']:.3f} s", "", "", ""),
        ("search whole archive (API)", f"{search_rate:.0f} MB/s",
         f"zcat | grep -c {grep_rate:.0f} MB/s", f"{ratio:.2f}",
         f">= {TARGET_SEARCH_RATIO} x", harness.verdict(ratio >= TARGET_SEARCH_RATIO)),
        ("  search time", f"{r['search_s']:.1f} s", f"zcat | grep -c {r['grep_s']:.1f} s", "",
         "", ""),
        ("  same through the search page", f"{r['page_search_s']:.1f} s", "", "", "", ""),
        ("server peak RSS (VmHWM)", f"{r['hwm'] / MB:.0f} MB", "", "", "", ""),
    ]
    for name, value, ref, ratio_text, target, verdict in rows:
        print(f"{name:<34} {value:>12} {ref:>28} {ratio_text:>6}  {target:<12} {verdict}")
    print("both search rates are of the log text (the search's bytes_scanned: "
          f"{text_bytes / MB:.0f} MB); zcat | grep also reads the tar headers and padding.")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1GiB", help="compressed archive size (1GiB)")
    parser.add_argument("--files", type=int, default=10_000, help="log files in it (10000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1,
                        help="search and reference runs (the median is reported)")
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--regenerate", action="store_true",
                        help="make the archive again even when it is cached")
    args = parser.parse_args(argv)
    size = harness.parse_size(args.size)
    for tool in ("curl", "gzip", "zcat", "grep"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is required")
    needed = 3 * size + 512 * MiB  # the cached archive, waitress's spool, the stored copy
    free = shutil.disk_usage(REPO).free
    if free < needed:
        raise SystemExit(f"need {needed / 1024**3:.1f} GiB free next to the repo, "
                         f"have {free / 1024**3:.1f} GiB")
    env = {"UPLOAD_MAX_SIZE": str(2 * size + MiB), "STORAGE_RESERVE": "256MiB",
           # The search must read the whole archive: no cap before the end.
           "INSPECT_SEARCH_TIMEOUT": "3600", "INSPECT_SEARCH_MAX_BYTES": "1TiB"}
    with harness.handle_signals():
        archive_path, facts = cached_archive(size, args.files, args.seed, args.regenerate)
        harness.settle(1)
        refs = {"gunzip_s": gunzip_reference(archive_path)}
        log(f"gzip -dc of the archive: {refs['gunzip_s']:.1f} s")
        with harness.Harness(args.db, env=env, label="inspect") as h:
            h.setup()
            h.start_server()
            result = measure(h, archive_path, facts, args.repeat)
            h.stop_server()
            report(facts, refs, result, args.db)
            problems = [line for line in h.server_log().splitlines()
                        if "ERROR" in line or "Traceback" in line]
            if problems:
                print("server log errors:")
                print("\n".join(problems[-20:]))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted; cleaned up")
        sys.exit(130)
