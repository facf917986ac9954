#!/usr/bin/env python3
"""Resumable (tus) upload throughput, finalising time and chunk size, next to references.

    .venv/bin/python bench/tus.py [--sizes 1GiB,3GiB] [--db sqlite|postgresql] [--pairs N]
                                  [--chunk-sizes 4,8,16,32,64,128 | --chunk-sizes none]
                                  [--no-node]

For each size, against a fresh ``collector serve`` (waitress) on 127.0.0.1 and a fresh
official Node tus server (``@tus/server`` + ``@tus/file-store``, installed with npm into a
temporary directory at run time, pinned below), on the same disk:

* reference: ``dd bs=1M conv=fsync`` of the file to the same disk, and the single-request
  upload (``curl -F`` to ``POST /api/v1/archives/``), as ``upload_download.py`` measures it;
* tuspy (the PyPI tus client) at 8 MiB and 64 MiB chunks to our server and to Node's; our
  archive's sha256 must match the file's (Node's stored file is hashed too);
* ``scripts/uploader.sh``: with ``--chunk-size 64M`` when its ``--help`` offers that option
  (its tus mode), otherwise as it is (one POST); it must exit 0;
* finalising: from the last byte of the last PATCH (a raw PATCH client, 64 MiB chunks) and
  from its answer to the moment the archive list shows the archive; the final PATCH's own
  duration beside a middle one's;
* both servers' peak RSS (``VmHWM`` since a reset just after startup).

Then, on the first size only, the chunk-size sweep: raw PATCH uploads at each chunk size,
each beginning with one deliberately dropped PATCH (half a chunk sent, connection closed)
to show what a drop costs, and the fixed cost of one PATCH (tiny chunks).

Everything lives in a temporary directory under the repository's ``var/`` and is removed at
the end, also on failure, Ctrl-C or SIGTERM; both servers are stopped by their PID and a
PostgreSQL database is dropped. Not part of ``make test``.
"""

import argparse
import base64
import contextlib
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

# The bench directory goes last on the path, not first (where Python puts a script's own
# directory): a bench script named like a stdlib module (say inspect.py) must not shadow it.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

from upload_download import (  # noqa: E402 (after the path insert)
    MB,
    REPO,
    TARGET_RSS_MB,
    TARGET_UPLOAD,
    Harness,
    MiB,
    RssSampler,
    curl,
    dd_reference,
    disk_sectors_written,
    free_port,
    handle_signals,
    human,
    log,
    make_random_file,
    median_run,
    parse_size,
    print_server_warnings,
    proc_cpu,
    proc_status,
    reset_hwm,
    settle,
    sha256_of,
    stop_process,
)

# The Node reference, pinned: the official tus server and its disk store.
NPM_PACKAGES = ("@tus/server@2.4.5", "@tus/file-store@2.1.1")
NODE_SERVER_JS = """\
import { Server } from '@tus/server'
import { FileStore } from '@tus/file-store'

const [directory, port] = process.argv.slice(2)
const server = new Server({ path: '/files', datastore: new FileStore({ directory }) })
server.listen({ host: '127.0.0.1', port: Number(port) }, () => console.log('listening'))
"""

# Issue 20's targets, tuspy, ours ÷ the reference measured in the same round:
TARGET_VS_NODE = 0.9  # 64 MiB chunks, ÷ plain @tus/server
TARGET_VS_NODE_FSYNC = 1.0  # 64 MiB chunks, ÷ @tus/server + one fsync of its file
TARGET_VS_NODE_8 = 0.8  # 8 MiB chunks, ÷ plain @tus/server
TARGET_8_VS_64 = 0.8  # ours at 8 MiB chunks ÷ ours at 64 MiB
TARGET_FINALISE_S = 2.0  # last PATCH sent → archive listed, for 3 GiB
TARGET_RSS_SPREAD_MB = 10
TUSPY_CHUNKS = (8 * MiB, 64 * MiB)
FINALISE_CHUNK = 64 * MiB
LINK_RATES = (1 * MB, 10 * MB)  # for the time a drop costs on a real link
MODEL_RTT = 0.05  # a customer's round trip, for the idle time each chunk costs on a link
UPLOADER = REPO / "scripts" / "uploader.sh"
TUS_HEADERS = {"Tus-Resumable": "1.0.0"}
LOAD_START = 0.0  # the 1-minute load average when main() started


# --- processes we start ------------------------------------------------------------------

def run_own(command, timeout, **kwargs):
    """Run a command in its own process group; on any exit path its group is ended by the
    PID we got, so grandchildren (curl under uploader.sh) do not outlive the bench."""
    proc = subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
                break
        raise
    return proc.returncode, out, err


class NodeTusServer:
    """The official Node tus server in a temp dir: installed once, a fresh process per size."""

    def __init__(self, root):
        self.dir = root / "node-tus"
        self.store = self.dir / "files"
        self.proc = None
        self.port = None

    def install(self):
        self.dir.mkdir()
        (self.dir / "package.json").write_text(
            json.dumps({"private": True, "type": "module"}) + "\n")
        (self.dir / "server.mjs").write_text(NODE_SERVER_JS)
        env = dict(os.environ, npm_config_cache=str(self.dir / ".npm-cache"))
        log(f"npm install {' '.join(NPM_PACKAGES)} into {self.dir}")
        code, _, err = run_own(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error",
                                *NPM_PACKAGES], timeout=600, cwd=self.dir, env=env)
        if code:
            raise RuntimeError(f"npm install failed ({code}; --no-node skips the Node "
                               f"reference):\n{err[-2000:]}")
        shutil.rmtree(self.dir / ".npm-cache", ignore_errors=True)

    def start(self):
        shutil.rmtree(self.store, ignore_errors=True)
        self.store.mkdir()
        self.port = free_port()
        self._log = open(self.dir / "server.log", "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            ["node", "server.mjs", str(self.store), str(self.port)], cwd=self.dir,
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node tus server exited with {self.proc.returncode}:\n"
                                   + (self.dir / "server.log").read_text()[-3000:])
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            with contextlib.suppress(OSError), contextlib.closing(conn):
                conn.request("OPTIONS", "/files/", headers=TUS_HEADERS)
                if conn.getresponse().status in (200, 204):
                    log(f"node tus server pid {self.proc.pid} on 127.0.0.1:{self.port}")
                    return self.proc.pid
            time.sleep(0.1)
        raise RuntimeError("node tus server did not answer within 30 s")

    def stop(self):
        proc, self.proc = self.proc, None
        stop_process(proc, "node tus server")
        self._log.close()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/files/"

    def stored(self, upload_url):
        """The stored file of an upload (its id is the last segment of its URL)."""
        return self.store / urlsplit(upload_url).path.rstrip("/").rsplit("/", 1)[-1]


# --- clients -----------------------------------------------------------------------------

def tuspy_upload(url, headers, path, chunk_size):
    """tuspy, chunk by chunk so each PATCH is timed: (seconds, PATCH durations, uploader)."""
    from tusclient import client

    uploader = client.TusClient(url, headers=headers).uploader(
        str(path), chunk_size=chunk_size, metadata={"filename": path.name})
    started = time.perf_counter()
    uploader.set_url(uploader.create_url())
    durations = []
    while uploader.offset < uploader.stop_at:
        before = time.perf_counter()
        uploader.upload_chunk()
        durations.append(time.perf_counter() - before)
    return time.perf_counter() - started, durations, uploader


class RawTus:
    """A minimal tus client on http.client: one connection per PATCH (as tuspy and curl
    do), the body sent in 1 MiB blocks, so 'last byte sent' can be timed."""

    def __init__(self, port, token):
        self.port = port
        self.headers = {**TUS_HEADERS, "Upload-Token": token}

    def _conn(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=900)

    def create(self, size, name):
        conn = self._conn()
        try:
            conn.request("POST", "/api/v1/uploads/", headers={
                **self.headers, "Upload-Length": str(size),
                "Upload-Metadata": "filename " + base64.b64encode(name.encode()).decode()})
            response = conn.getresponse()
            response.read()
            if response.status != 201:
                raise RuntimeError(f"tus creation answered {response.status}")
            return urlsplit(response.getheader("Location")).path
        finally:
            conn.close()

    def offset(self, location):
        conn = self._conn()
        try:
            conn.request("HEAD", location, headers=self.headers)
            response = conn.getresponse()
            response.read()
            return int(response.getheader("Upload-Offset"))
        finally:
            conn.close()

    def patch(self, location, handle, offset, length, send=None):
        """PATCH ``length`` bytes from ``offset``; with ``send`` < length, send only that
        many and drop the connection (returns None). Else (start, last byte sent, answer:
        perf_counter values; answer headers; body)."""
        conn = self._conn()
        try:
            started = time.perf_counter()
            conn.putrequest("PATCH", location, skip_accept_encoding=True)
            for name, value in {**self.headers, "Upload-Offset": str(offset),
                                "Content-Type": "application/offset+octet-stream",
                                "Content-Length": str(length)}.items():
                conn.putheader(name, value)
            conn.endheaders()
            handle.seek(offset)
            remaining = length if send is None else send
            while remaining:
                block = handle.read(min(MiB, remaining))
                conn.send(block)
                remaining -= len(block)
            if send is not None:
                return None
            sent = time.perf_counter()
            response = conn.getresponse()
            body = response.read()
            answered = time.perf_counter()
            if response.status not in (200, 204):
                raise RuntimeError(f"PATCH answered {response.status}: {body[:300]!r}")
            return (started, sent, answered), dict(response.getheaders()), body
        finally:
            conn.close()

    def upload(self, path, chunk, drop_first=False):
        """Upload a file in ``chunk``-sized PATCHes. With ``drop_first``, first send half of
        the first chunk, drop the connection and ask the offset (untimed): the offset must
        still be 0, i.e. every byte of the dropped request is sent again."""
        size = os.path.getsize(path)
        location = self.create(size, path.name)
        result = {"patches": []}
        with open(path, "rb") as handle:
            if drop_first:
                half = min(chunk, size) // 2
                self.patch(location, handle, 0, min(chunk, size), send=half)
                before = time.perf_counter()
                kept = self.offset(location)
                result["drop"] = {"sent": half, "kept": kept, "resent": half - kept,
                                  "head_s": time.perf_counter() - before}
            started = time.perf_counter()
            offset = 0
            while offset < size:
                length = min(chunk, size - offset)
                times, headers, body = self.patch(location, handle, offset, length)
                result["patches"].append((length, *times))
                offset = int(headers["Upload-Offset"])
        _, _, last_sent, finished = result["patches"][-1]
        result.update(seconds=finished - started, finished_at=finished, last_sent_at=last_sent,
                      archive_id=headers.get("Upload-Archive-Id"),
                      receipt=json.loads(body) if body else None)
        return result


# --- our server --------------------------------------------------------------------------

class Ours:
    """Our server for one size, its ticket and the archive list."""

    def __init__(self, harness, ticket):
        self.harness, self.ticket = harness, ticket
        self.token = ticket["token"]

    @property
    def tus_url(self):
        return f"{self.harness.base}/api/v1/uploads/"

    def archives(self):
        return self.harness.api("GET", f"/api/v1/archives/?ticket={self.ticket['number']}")

    def wait_listed(self, archive_id, timeout=120):
        """Poll the staff list until it shows the archive; returns (archive, perf_counter)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for archive in self.archives():
                if str(archive["id"]) == str(archive_id):
                    return archive, time.perf_counter()
            time.sleep(0.005)
        raise RuntimeError(f"archive {archive_id} not listed after {timeout} s")

    def check_and_delete(self, archive, size, expected):
        if archive["sha256"] != expected or archive["size"] != size:
            raise RuntimeError(f"stored archive differs from the file: {archive}")
        self.harness.api("DELETE", f"/api/v1/archives/{archive['id']}/", expect=(204,))


def uploader_has(option):
    """Whether scripts/uploader.sh's --help mentions ``option``."""
    result = subprocess.run(["sh", str(UPLOADER), "--help"], check=False,
                            capture_output=True, text=True, timeout=30)
    return option in result.stdout + result.stderr


def uploader_mode():
    """'tus' when scripts/uploader.sh offers --chunk-size (its tus mode), else 'post'."""
    return "tus" if uploader_has("--chunk-size") else "post"


# --- one size ----------------------------------------------------------------------------

class Runner:
    def __init__(self, harness, ticket, node, repeat):
        self.harness, self.ticket, self.node, self.repeat = harness, ticket, node, repeat
        self.ours = Ours(harness, ticket)

    def rounds(self, runs, rows):
        """Measure each row of ``(name, fn, pids)`` once per round, ``repeat`` rounds, so
        that a busy spell on a shared machine hits all rows alike; keeps each median."""
        collected = {name: [] for name, _, _ in rows}
        for attempt in range(self.repeat):
            for name, fn, pids in rows:
                run = self.once(name, attempt, fn, pids)
                collected[name].append((run["rate"], run))
        for name, measured in collected.items():
            every = [dict(run) for _, run in measured]  # in round order, for the ratios
            runs[name] = median_run(measured)[1]
            runs[name]["all"] = every

    def once(self, name, attempt, fn, pids):
        """One run of ``fn`` after a settle, with the servers' CPU seconds, the disk writes
        and the VmRSS peak (sampler phase ``name``)."""
        settle()
        for sampler in self.samplers:
            sampler.phase(name)
        cpu = [proc_cpu(pid) for pid in pids]
        sectors = disk_sectors_written(self.harness.dir)
        run = fn()
        if pids:
            run["cpu"] = sum(proc_cpu(pid) for pid in pids) - sum(cpu)
        after = disk_sectors_written(self.harness.dir)
        run["written"] = (after - sectors) * 512 / self.size if sectors is not None else None
        for sampler in self.samplers:
            sampler.phase("between")
        run["rate"] = self.size / run["seconds"] / MB
        label = f"chunk {name // MiB} MiB" if isinstance(name, int) else name
        log(f"{label} {attempt + 1}: {run['rate']:.0f} MB/s in {run['seconds']:.1f} s, "
            f"server CPU {run.get('cpu', 0):.1f} s")
        return run

    # the rows
    def dd(self):
        rate, seconds = dd_reference(self.path, self.harness.dir / "dd.out")
        return {"seconds": seconds}

    def post(self):
        response = self.harness.dir / "post.json"
        code, _, _, seconds = curl(
            "-o", str(response), "-H", f"Upload-Token: {self.ours.token}",
            "-F", f"file=@{self.path};filename={self.path.name}",
            f"{self.harness.base}/api/v1/archives/")
        if code != 201:
            raise RuntimeError(f"single POST answered {code}: {response.read_text()[:300]}")
        self.ours.check_and_delete(json.loads(response.read_text()), self.size, self.expected)
        return {"seconds": seconds}

    def tuspy_ours(self, chunk):
        seconds, durations, uploader = tuspy_upload(
            self.ours.tus_url, {"Upload-Token": self.ours.token}, self.path, chunk)
        answered = time.perf_counter()
        archive, listed = self.ours.wait_listed(uploader.request.response_headers.get(
            "upload-archive-id"))
        self.ours.check_and_delete(archive, self.size, self.expected)
        full = [d for d in durations[:-1]] or durations
        return {"seconds": seconds, "final_patch": durations[-1],
                "middle_patch": statistics.median(full), "answered_to_listed": listed - answered}

    def tuspy_node(self, chunk):
        seconds, _, uploader = tuspy_upload(self.node.url, {}, self.path, chunk)
        stored = self.node.stored(uploader.url)
        # @tus/file-store never fsyncs: how long until its file is on disk, for comparison
        before = time.perf_counter()
        fd = os.open(stored, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        durable = seconds + time.perf_counter() - before
        if stored.stat().st_size != self.size or sha256_of(stored) != self.expected:
            raise RuntimeError("the Node server stored a different file")
        for leftover in self.node.store.iterdir():
            leftover.unlink()
        return {"seconds": seconds, "durable": durable}

    def uploader_sh(self):
        command = ["sh", str(UPLOADER), "-f", str(self.path), "-t", self.ours.token,
                   "-u", self.harness.base]
        if self.uploader == "tus":
            command += ["--chunk-size", "64M"]
        if uploader_has("--again"):
            # it remembers an uploaded file (FILE.upload) and, without a terminal, would
            # send nothing the second round: --again uploads it anew
            command.append("--again")
        started = time.perf_counter()
        code, out, err = run_own(command, timeout=3600)
        seconds = time.perf_counter() - started
        if code:
            raise RuntimeError(f"uploader.sh exited {code}:\n{(out + err)[-2000:]}")
        archive = max(self.ours.archives(), key=lambda a: a["id"])
        self.ours.check_and_delete(archive, self.size, self.expected)
        return {"seconds": seconds, "exit": code}

    def raw(self, chunk, drop_first=False):
        run = RawTus(self.harness.port, self.ours.token).upload(self.path, chunk, drop_first)
        archive, listed = self.ours.wait_listed(run["archive_id"])
        self.ours.check_and_delete(archive, self.size, self.expected)
        # (length, started, last byte sent, answered) per PATCH
        patches = run.pop("patches")
        middle = [p for p in patches[:-1] if p[0] == chunk] or patches
        final = patches[-1]
        run.update(send_s=sum(p[2] - p[1] for p in patches),
                   wait_s=sum(p[3] - p[2] for p in patches),
                   sent_to_listed=listed - run["last_sent_at"],
                   answered_to_listed=listed - run["finished_at"],
                   final_after_send=final[3] - final[2], final_patch=final[3] - final[1],
                   middle_after_send=statistics.median(p[3] - p[2] for p in middle),
                   middle_patch=statistics.median(p[3] - p[1] for p in middle))
        return run

    def per_patch_cost(self, count=40, length=4096):
        """Median duration of a tiny PATCH: the fixed cost every chunk pays (connection,
        token check, lock, fsync, commit)."""
        client = RawTus(self.harness.port, self.ours.token)
        tiny = self.harness.dir / "tiny.bin"
        tiny.write_bytes(os.urandom(count * length))
        location = client.create(count * length, tiny.name)
        durations = []
        with open(tiny, "rb") as handle:
            for index in range(count):
                times, headers, _ = client.patch(location, handle, index * length, length)
                durations.append(times[2] - times[0])
        archive, _ = self.ours.wait_listed(headers["Upload-Archive-Id"])
        self.harness.api("DELETE", f"/api/v1/archives/{archive['id']}/", expect=(204,))
        tiny.unlink()
        return statistics.median(durations[:-1])

    def run_size(self, size, sweep_chunks):
        self.size = size
        self.path = self.harness.dir / f"random-{human(size)}.bin"
        self.uploader = uploader_mode()
        log(f"generating {human(size)} of random bytes in {self.path}")
        make_random_file(self.path, size)
        self.expected = sha256_of(self.path)
        result = {"size": size, "runs": {}, "uploader": self.uploader}
        runs = result["runs"]
        self.samplers = []
        try:
            settle()
            pid = self.harness.start_server()
            node_pid = self.node.start() if self.node else None
            result["rss_idle"] = proc_status(pid, "VmRSS") or 0
            result["hwm_reset"] = reset_hwm(pid)
            self.samplers = [RssSampler(pid)]
            if node_pid:
                result["node_rss_idle"] = proc_status(node_pid, "VmRSS") or 0
                reset_hwm(node_pid)
                self.samplers.append(RssSampler(node_pid))
            for sampler in self.samplers:
                sampler.start()
            rows = [("dd", self.dd, ()), ("post", self.post, (pid,))]
            for chunk in TUSPY_CHUNKS:
                rows.append((f"ours-{chunk // MiB}", lambda c=chunk: self.tuspy_ours(c), (pid,)))
                if node_pid:
                    rows.append((f"node-{chunk // MiB}", lambda c=chunk: self.tuspy_node(c),
                                 (node_pid,)))
            rows += [("uploader", self.uploader_sh, (pid,)),
                     ("raw-64", lambda: self.raw(FINALISE_CHUNK), (pid,))]
            self.rounds(runs, rows)
            result["hwm"] = proc_status(pid, "VmHWM") or 0
            if node_pid:
                result["node_hwm"] = proc_status(node_pid, "VmHWM") or 0
            if sweep_chunks:
                reset_hwm(pid)
                result["patch_cost"] = self.per_patch_cost()
                sweep = result["sweep"] = {}
                self.rounds(sweep, [(chunk, lambda c=chunk: self.raw(c, drop_first=True), (pid,))
                                    for chunk in sweep_chunks])
                result["sweep_hwm"] = proc_status(pid, "VmHWM") or 0
        finally:
            for sampler in self.samplers:
                sampler.stop()
            result["rss_peaks"] = [sampler.peaks for sampler in self.samplers]
            if self.node:
                self.node.stop()
            self.harness.stop_server()
            self.path.unlink(missing_ok=True)
        return result


# --- the report --------------------------------------------------------------------------

def verdict(ok):
    return "PASS" if ok else "FAIL"


def print_report(results, db, node):
    print()
    print(f"Logs Collector tus benchmark — db={db}, client tuspy (PyPI), "
          f"reference {' + '.join(NPM_PACKAGES) if node else '(Node skipped)'}, "
          f"{os.cpu_count()} CPUs, 1-min load {LOAD_START:.2f} at the start, "
          f"{os.getloadavg()[0]:.2f} at the end")
    print("MB = 10^6 bytes; median of the runs; fresh servers per size; "
          "server CPU = user+system seconds of the server under test")
    header = (f"{'size':>6} {'row':<34} {'value':>10} {'time':>7} {'CPU':>6} {'disk':>5} "
              f"{'reference':>16} {'ratio':>6}  {'target':<16} result")
    print(header)
    print("-" * len(header))
    for r in results:
        runs, size = r["runs"], human(r["size"])
        dd = runs["dd"]["rate"]
        rows = [("dd bs=1M conv=fsync", runs["dd"], "", "", "", "")]

        def vs_dd(name, label, target=None):
            run = runs[name]
            ratio = run["rate"] / dd
            rows.append((label, run, f"dd {dd:.0f} MB/s", f"{ratio:.2f}",
                         f">= {target:.2f} x dd" if target else "",
                         verdict(ratio >= target) if target else ""))

        vs_dd("post", "upload curl -F (1 POST)")
        for chunk in TUSPY_CHUNKS:
            mib = chunk // MiB
            vs_dd(f"ours-{mib}", f"tuspy {mib} MiB -> ours",
                  TARGET_UPLOAD if chunk == 64 * MiB else None)
            if f"node-{mib}" in runs:
                node_run, ours = runs[f"node-{mib}"], runs[f"ours-{mib}"]["rate"]
                ratio = ours / node_run["rate"]
                target = TARGET_VS_NODE if chunk == 64 * MiB else None
                rows.append((f"tuspy {mib} MiB -> Node @tus/server", node_run,
                             f"ours {ours:.0f} MB/s", f"{ratio:.2f}",
                             f">= {target:.1f} x Node" if target else "ours / Node",
                             verdict(ratio >= target) if target else ""))
                durable = {"seconds": node_run["durable"],
                           "rate": r["size"] / node_run["durable"] / MB}
                rows.append(("  Node + fsync of its file after", durable,
                             f"ours {ours:.0f} MB/s", f"{ours / durable['rate']:.2f}",
                             "(information)", ""))
        label = ("uploader.sh --chunk-size 64M (tus)" if r["uploader"] == "tus"
                 else "uploader.sh (single POST)")
        vs_dd("uploader", label)
        rows[-1] = (*rows[-1][:5], "exit 0")
        vs_dd("raw-64", "raw PATCH 64 MiB -> ours")
        raw, t64 = runs["raw-64"], runs["ours-64"]
        secs = [
            ("  raw 64 MiB: sending the bodies", raw["send_s"],
             f"waiting {raw['wait_s']:.2f} s"),
            ("final PATCH (tuspy 64 MiB)", t64["final_patch"],
             f"middle {t64['middle_patch']:.2f} s"),
            ("  answered -> listed", t64["answered_to_listed"], ""),
            ("final PATCH (raw 64 MiB)", raw["final_patch"],
             f"middle {raw['middle_patch']:.2f} s"),
            ("  last byte sent -> answered", raw["final_after_send"],
             f"middle {raw['middle_after_send']:.2f} s"),
        ]
        rss_mb = r["hwm"] / MB
        for name, run, ref, ratio, target, result in rows:
            cpu = f"{run['cpu']:.1f}s" if "cpu" in run else ""
            disk = f"{run['written']:.2f}" if run.get("written") is not None else ""
            print(f"{size:>6} {name:<34} {run['rate']:>5.0f} MB/s {run['seconds']:>6.1f}s "
                  f"{cpu:>6} {disk:>5} {ref:>16} {ratio:>6}  {target:<16} {result}")
            size = ""
        for name, value, ref in secs:
            print(f"{size:>6} {name:<34} {value:>8.2f} s {'':>20} {ref:>16}")
        finalise = raw["sent_to_listed"]
        print(f"{size:>6} {'finalising: last byte -> listed':<34} {finalise:>8.2f} s "
              f"{'':>20} {'raw 64 MiB':>16} {'':>6}  {'< 2 s (3 GiB)':<16} "
              f"{verdict(finalise < TARGET_FINALISE_S)}")
        print(f"{size:>6} {'  answered -> listed':<34} {raw['answered_to_listed']:>8.2f} s")
        print(f"{size:>6} {'ours peak RSS (VmHWM since reset)':<34} {rss_mb:>8.0f} MB "
              f"{'':>20} {'idle ' + format(r['rss_idle'] / MB, '.0f') + ' MB':>16} {'':>6}  "
              f"{'< ' + str(TARGET_RSS_MB) + ' MB':<16} {verdict(rss_mb < TARGET_RSS_MB)}")
        peaks = r["rss_peaks"]
        if peaks:
            names = [n for n in ("post", "ours-8", "ours-64", "uploader", "raw-64")
                     if n in peaks[0]]
            print(f"{'':>6} {'  VmRSS max per row (20 ms)':<34} "
                  + " ".join(f"{n} {peaks[0][n] / MB:.0f}" for n in names) + " MB")
        if "node_hwm" in r:
            node_mb = r["node_hwm"] / MB
            print(f"{'':>6} {'Node peak RSS (VmHWM since reset)':<34} {node_mb:>8.0f} MB "
                  f"{'':>20} {'idle ' + format(r['node_rss_idle'] / MB, '.0f') + ' MB':>16} "
                  f"{'ours/Node':>6}  {rss_mb / node_mb:.2f}")
        if "sweep_hwm" in r:
            chunks = f"4 KiB-{max(r['sweep']) // MiB} MiB"
            print(f"{'':>6} {'ours peak RSS during chunk sweep':<34} "
                  f"{r['sweep_hwm'] / MB:>8.0f} MB {'':>20} {chunks:>16} {'':>6}  "
                  f"{'< ' + str(TARGET_RSS_MB) + ' MB':<16} "
                  f"{verdict(r['sweep_hwm'] / MB < TARGET_RSS_MB)}")
        print()
    if len(results) > 1:
        hwms = [r["hwm"] / MB for r in results]
        spread = max(hwms) - min(hwms)
        listing = ", ".join(f"{human(r['size'])}: {h:.0f} MB"
                            for r, h in zip(results, hwms, strict=True))
        print(f"our peak RSS across sizes: {listing} — spread {spread:.0f} MB (target: "
              f"independent of size, spread < {TARGET_RSS_SPREAD_MB} MB: "
              f"{verdict(spread < TARGET_RSS_SPREAD_MB)})")
        print()
    for r in results:
        if "sweep" in r:
            print_sweep(r)


def print_sweep(r):
    sweep, cost = r["sweep"], r["patch_cost"]
    best = max(run["rate"] for run in sweep.values())
    print(f"Chunk size, {human(r['size'])} file, raw PATCH (one connection per chunk) -> ours; "
          f"fixed cost of one PATCH (4 KiB chunks, median): {cost * 1000:.1f} ms")
    print("Each upload starts with one dropped PATCH (half a chunk sent, then the connection "
          "closed);")
    print("'resent' is what the server kept none of, measured by HEAD. Time lost per drop = "
          "resent / link rate + one PATCH's fixed cost.")
    print(f"'idle' models a customer's link: after each chunk the sender waits for the answer "
          f"(server time after the last byte + {MODEL_RTT * 1000:.0f} ms RTT),")
    print("shown as a share of the chunk's transfer time at 10 MB/s.")
    header = (f"{'chunk MiB':>9} | {'MB/s':>5} | {'of best':>7} | {'after last byte s':>17} | "
              f"{'final PATCH s':>13} | "
              f"{'mean resent after a drop':>24} | {'lost @1 MB/s':>12} | "
              f"{'lost @10 MB/s':>13} | {'idle @10 MB/s':>13} | {'PATCHes/GiB':>11}")
    print(header)
    print("-" * len(header))
    for chunk, run in sorted(sweep.items()):
        resent = run["drop"]["resent"]
        lost = [resent / rate + cost for rate in LINK_RATES]
        idle = (run["middle_after_send"] + MODEL_RTT) / (chunk / LINK_RATES[1])
        print(f"{chunk // MiB:>9} | {run['rate']:>5.0f} | {run['rate'] / best:>7.2f} | "
              f"{run['middle_after_send']:>17.3f} | {run['final_patch']:>13.2f} | "
              f"{resent / MiB:>20.1f} MiB | {lost[0]:>10.1f} s | {lost[1]:>11.2f} s | "
              f"{idle:>12.1%} | {1024 // (chunk // MiB):>11}")
    print()


def print_targets(results):
    """Issue 20's table: tuspy at 64 and 8 MiB against @tus/server, plain and + fsync,
    min / median / max over the rounds and the median (min–max) of the per-round ratios."""
    print("Issue 20 targets (tuspy; ratio = median (min-max) over the rounds of ours ÷ the "
          "reference measured in the same round)")
    print()
    print("| size | row | MB/s min / median / max | ratio | target | |")
    print("|---|---|---|---|---|---|")
    for r in results:
        runs, nbytes = r["runs"], r["size"]
        label = human(nbytes)

        def seconds(name, key="seconds"):
            return [run[key] for run in runs[name]["all"]]

        def row(name, times):
            nonlocal label
            rates = sorted(nbytes / t / MB for t in times)
            print(f"| {label} | {name} | {rates[0]:.0f} / {statistics.median(rates):.0f} / "
                  f"{rates[-1]:.0f} | | | |")
            label = ""

        def ratio(name, ours, reference, target):
            ratios = [ref / mine for mine, ref in zip(ours, reference, strict=True)]
            median = statistics.median(ratios)
            print(f"| | {name} | | {median:.2f}× ({min(ratios):.2f}–{max(ratios):.2f}) | "
                  f"≥ {target:.1f}× | {'met' if median >= target else '**missed**'} |")

        ours64, ours8 = seconds("ours-64"), seconds("ours-8")
        node64, node8 = seconds("node-64"), seconds("node-8")
        durable64 = seconds("node-64", "durable")
        row("tuspy 64 MiB -> ours", ours64)
        row("tuspy 64 MiB -> @tus/server", node64)
        row("@tus/server + fsync of its file", durable64)
        ratio("ours 64 MiB ÷ @tus/server + fsync", ours64, durable64, TARGET_VS_NODE_FSYNC)
        ratio("ours 64 MiB ÷ @tus/server", ours64, node64, TARGET_VS_NODE)
        row("tuspy 8 MiB -> ours", ours8)
        row("tuspy 8 MiB -> @tus/server", node8)
        ratio("ours 8 MiB ÷ @tus/server", ours8, node8, TARGET_VS_NODE_8)
        ratio("ours 8 MiB ÷ ours 64 MiB", ours8, ours64, TARGET_8_VS_64)
    print()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1GiB", help="file size (default 1GiB)")
    parser.add_argument("--sizes", help="comma list, e.g. 1GiB,3GiB (overrides --size)")
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--repeat", "--pairs", dest="repeat", type=int, default=1,
                        help="runs per measurement (the median is reported)")
    parser.add_argument("--chunk-sizes", default="4,8,16,32,64,128",
                        help="MiB list for the chunk-size sweep on the first size, "
                             "or 'none' (default 4,8,16,32,64,128)")
    parser.add_argument("--no-node", action="store_true",
                        help="skip the Node @tus/server reference (no npm needed)")
    args = parser.parse_args(argv)
    global LOAD_START
    LOAD_START = os.getloadavg()[0]
    log(f"1-minute load average at the start: {LOAD_START:.2f}")
    sizes = [parse_size(s) for s in (args.sizes or args.size).split(",") if s.strip()]
    sweep = ([] if args.chunk_sizes.strip().lower() == "none" else
             [int(c) * MiB for c in args.chunk_sizes.split(",") if c.strip()])
    try:
        import tusclient  # noqa: F401 (only checks that tuspy is installed)
    except ImportError:
        raise SystemExit("tuspy is required: .venv/bin/pip install -e '.[test]'") from None
    tools = ["curl", "dd"] + ([] if args.no_node else ["node", "npm"])
    for tool in tools:
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is required (or pass --no-node for node/npm)")
    max_size = max(sizes)
    env = {"UPLOAD_MAX_SIZE": str(max(max_size + MiB, 4 * 1024**3)),
           "STORAGE_RESERVE": "256MiB"}
    # the file + waitress's spool of the single POST + the stored archive (+ reserve)
    needed = 3 * max_size + 512 * MiB
    (REPO / "var").mkdir(exist_ok=True)
    free = shutil.disk_usage(REPO / "var").free
    if free < needed:
        raise SystemExit(f"need {needed / 1024**3:.1f} GiB free next to the repo, "
                         f"have {free / 1024**3:.1f} GiB")
    results = []
    with handle_signals(), Harness(args.db, env=env, label="tus") as harness:
        node = None
        try:
            if not args.no_node:
                node = NodeTusServer(harness.dir)
                node.install()
            harness.setup()
            harness.start_server()
            ticket = harness.create_ticket(number=1, attempts=1000)
            harness.stop_server()
            runner = Runner(harness, ticket, node, args.repeat)
            for index, size in enumerate(sizes):
                results.append(runner.run_size(size, sweep if index == 0 else []))
        finally:
            if node:
                node.stop()
        print_report(results, args.db, node)
        if node:
            print_targets(results)
        print_server_warnings(harness)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted; cleaned up")
        sys.exit(130)
