"""A real `collector serve`: JSON log lines, the access log and METRICS_ALLOW behind a
trusted proxy (waitress's X-Forwarded-For handling), production.ini as shipped."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
COLLECTOR = Path(sys.executable).with_name("collector")
TOKEN = "serve-metrics-token-0123456789"

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "SECRET_KEY": "serve-logs-secret-key-0123456789",
           "DATA_DIR": str(tmp_path / "data"), "WAITRESS_LISTEN": f"127.0.0.1:{port}",
           "WAITRESS_TRUSTED_PROXY": "127.0.0.1", "LOG_FORMAT": "json",
           "ALLOWED_HOSTS": "127.0.0.1",
           "METRICS_TOKEN": TOKEN, "METRICS_ALLOW": "203.0.113.0/24"}
    for name in ("DB_URL", "LOG_LEVEL", "ACCESS_LOG", "ACCESS_LOG_FORMAT"):
        env.pop(name, None)
    ini = str(ROOT / "production.ini")
    subprocess.run([str(COLLECTOR), "-c", ini, "migrate"], env=env, check=True,
                   capture_output=True)
    log = tmp_path / "stderr.log"
    with open(log, "wb") as stderr:
        process = subprocess.Popen([str(COLLECTOR), "-c", ini, "serve"], env=env,
                                   stdout=subprocess.DEVNULL, stderr=stderr)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(base + "/api/v1/check/health/", timeout=2).close()
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        yield base, log
    finally:
        process.terminate()
        process.wait(timeout=20)


def _status(url, **headers):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=10) as res:
            return res.status
    except urllib.error.HTTPError as error:
        return error.code


def test_json_lines_access_log_and_allow_list_behind_a_trusted_proxy(server):
    base, log = server
    auth = {"Authorization": f"Bearer {TOKEN}"}
    # The peer is 127.0.0.1, the trusted proxy: the client is the forwarded address.
    assert _status(base + "/metrics", **auth, **{"X-Forwarded-For": "203.0.113.5"}) == 200
    assert _status(base + "/metrics", **auth) == 403
    assert _status(base + "/metrics", **{"X-Forwarded-For": "203.0.113.5"}) == 401
    # A line is written once its answer has been handed over: wait for the last one.
    deadline = time.monotonic() + 10
    while True:
        entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        access = [entry["access"] for entry in entries
                  if entry["logger"] == "collector.access"
                  and entry["access"]["path"] == "/metrics"]
        if len(access) == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert {"time", "level", "logger", "thread", "message"} <= set(entries[0])
    # Each line is written when its thread closes the answer: in any order.
    assert sorted((a["client"], a["status"]) for a in access) == [
        ("127.0.0.1", 403), ("203.0.113.5", 200), ("203.0.113.5", 401)]
    scrape = next(a for a in access if a["status"] == 200)
    assert scrape["bytes"] > 1000 and scrape["request"] == "GET /metrics HTTP/1.1"
