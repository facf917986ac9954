"""Slow searches against a real ``collector serve`` (4 worker threads) cannot starve it.

Each search below backtracks until ``INSPECT_SEARCH_TIMEOUT`` (4 s). Before searches had a
bound of their own, as many of them as there are worker threads held every thread: health
waited for a free one (38 s with 16 of them in the review). Now at most
``INSPECT_SEARCH_CONCURRENCY`` (2) run at once; the others are answered 503 with
``Retry-After`` at once, and health, the API and the pages keep answering meanwhile.
"""

import json
import threading
import time
import urllib.parse

import pytest
from serverproc import Server, database

pytestmark = pytest.mark.slow

SEARCH_TIMEOUT = 4
CONCURRENCY = 2  # the default
RUNAWAY = "/search?" + urllib.parse.urlencode({"q": "(a+a+)+b", "regex": "1"})


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request, tmp_path):
    with database(request.param, tmp_path / "db") as db_url:
        server = Server(tmp_path / "server", db_url)
        server.extra_env = {"INSPECT_SEARCH_TIMEOUT": str(SEARCH_TIMEOUT)}
        server.setup()
        try:
            yield server.start()
        finally:
            server.stop()


def timed(server, path, bearer=True):
    headers = {"Authorization": f"Bearer {server.token}"} if bearer else {}
    started = time.monotonic()
    status, headers, data = server.request("GET", path, headers=headers, timeout=120)
    return status, headers, data, time.monotonic() - started


def searchable_archive(server):
    ticket = server.ticket(9001, attempts=5)
    status, _, data = server.request("POST", "/api/v1/archives/?filename=a.log",
                                     b"a" * 5000 + b"\n", {"Upload-Token": ticket["token"],
                                                            "Content-Type": "text/plain"})
    assert status == 201, data
    archive = f"/api/v1/archives/{json.loads(data)['id']}"
    deadline = time.monotonic() + 60
    while timed(server, f"{archive}/members/")[0] != 200:  # 503 while its index is built
        assert time.monotonic() < deadline
        time.sleep(0.2)
    return archive


def peak_memory(server):
    with open(f"/proc/{server.pid}/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status
                    if line.startswith("VmHWM:"))


@pytest.mark.parametrize("searches", [4, 16])
def test_slow_searches_cannot_starve_the_server(server, searches):
    archive = searchable_archive(server)
    answers = []

    def search():
        answers.append(timed(server, archive + RUNAWAY))

    clients = [threading.Thread(target=search) for _ in range(searches)]
    for client in clients:
        client.start()
    try:
        time.sleep(0.5)  # the searches have arrived and the first ones are running
        # Meanwhile: health, an API list and a page answer promptly.
        waited = {}
        for path, bearer in (("/api/v1/check/health/", False), ("/api/v1/tickets/", True),
                             ("/platforms/crash/tickets/9001/", True)):
            status, _, data, seconds = timed(server, path, bearer)
            assert status == 200, (path, status, data[:300])
            assert seconds < 2, (path, seconds)
            waited[path] = round(seconds, 3)
    finally:
        for client in clients:
            client.join(120)
    statuses = sorted(status for status, *_ in answers)
    assert len(statuses) == searches
    ran = [answer for answer in answers if answer[0] == 200]
    busy = [answer for answer in answers if answer[0] == 503]
    assert len(ran) + len(busy) == searches, statuses
    assert 1 <= len(ran) <= CONCURRENCY, statuses
    for _status, _headers, data, _seconds in ran:
        assert json.loads(data)["reason"] == "time"
    for _status, headers, data, _seconds in busy:
        assert headers["retry-after"] == "5"
        assert "INSPECT_SEARCH_CONCURRENCY" in json.loads(data)["detail"]
        assert seconds < 2
    print(f"{searches} searches: {len(ran)} ran, {len(busy)} refused at once; meanwhile "
          f"{waited} s; server peak RSS {peak_memory(server) // 2**20} MiB")
    # And once they are done, searching works again.
    status, _, data, _ = timed(server, archive + "/search?q=aaa")
    assert status == 200, data
    assert "Traceback" not in server.log(), server.log()[-3000:]
