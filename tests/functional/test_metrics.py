"""/metrics: off by default, bearer token and address list, figures that move, threads."""

import concurrent.futures
import urllib.request

import pytest
import webtest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine

from collector import main, metrics

TOKEN = "metrics-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
V = {"Tus-Resumable": "1.0.0"}


@pytest.fixture
def settings(settings):
    return {**settings, "metrics.token": TOKEN}


@pytest.fixture(autouse=True)
def _fresh_state(monkeypatch):
    # Scrapes in a test must see the rows just written, not a figure read 5 s ago.
    monkeypatch.setattr(metrics, "STATE_TTL", 0.0)


@pytest.fixture
def ticket(factory):
    return factory.ticket(factory.platform("vm6"), 77, attempts=5)


def scrape(testapp, **kwargs):
    res = testapp.get("/metrics", headers=AUTH, **kwargs)
    assert res.headers["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(res.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def uploads(samples, outcome, reason=""):
    return (value(samples, "collector_uploads_total", outcome=outcome, reason=reason),
            value(samples, "collector_upload_bytes_total", outcome=outcome, reason=reason))


def test_off_without_a_token(settings, engine):
    app = main({}, **{**settings, "metrics.token": ""})
    testapp = webtest.TestApp(app, extra_environ={"HTTP_HOST": "localhost"})
    testapp.get("/metrics", headers=AUTH, status=404)
    assert "metrics" not in app.registry


def test_token_is_required(testapp):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                    {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": f"Bearer {TOKEN}x"}):
        res = testapp.get("/metrics", headers=headers, status=401)
        assert res.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
        assert "collector_" not in res.text
    testapp.get("/metrics", headers=AUTH, status=200)


def test_address_allow_list(app, settings):
    from collector.settings import as_networks

    app.registry.settings["metrics.allow"] = as_networks("10.0.0.0/8, ::1")
    for address, status in (("127.0.0.1", 403), ("10.1.2.3", 200), ("::1", 200),
                            ("::ffff:10.9.9.9", 200), ("192.168.0.1", 403), ("", 403)):
        testapp = webtest.TestApp(app, extra_environ={"HTTP_HOST": "localhost",
                                                      "REMOTE_ADDR": address})
        testapp.get("/metrics", headers=AUTH, status=status)
    # A wrong address is refused before the token is even looked at.
    webtest.TestApp(app, extra_environ={"HTTP_HOST": "localhost", "REMOTE_ADDR": "1.2.3.4"}
                    ).get("/metrics", status=403)


def test_scrape_parses_and_has_every_family(testapp, data_dir):
    testapp.get("/api/v1/check/health/")
    samples = scrape(testapp)
    names = {name for name, _ in samples}
    for name in ("collector_storage_free_bytes", "collector_storage_total_bytes",
                 "collector_storage_reserve_bytes", "collector_archives",
                 "collector_archive_bytes", "collector_resumable_uploads_open",
                 "collector_database_up", "collector_upload_requests_in_progress",
                 "collector_http_request_duration_seconds_bucket",
                 "process_resident_memory_bytes"):
        assert name in names, name
    assert value(samples, "collector_storage_free_bytes") > 0
    assert value(samples, "collector_database_up") == 1
    assert value(samples, "collector_http_request_duration_seconds_count",
                 route="api.check.health", method="GET") == 1
    assert value(samples, "collector_http_responses_total", route="api.check.health",
                 status="200") == 1


def test_routes_are_bounded_labels(testapp, staff):
    testapp.get("/login")
    testapp.get("/no/such/page/at/all", status=404)
    testapp.get("/api/v1/platforms/", status=401)
    testapp.get("/api/v1/tickets/424242/", headers=staff.headers, status=404)
    samples = scrape(testapp)
    routes = {dict(labels).get("route") for name, labels in samples
              if name == "collector_http_request_duration_seconds_count"}
    assert {"page:Root/login", "not_found", "api.platforms", "api.ticket"} <= routes
    assert value(samples, "collector_http_responses_total", route="api.ticket",
                 status="404") == 1
    assert not any("no/such" in (route or "") for route in routes)


def test_a_request_refused_before_routing(settings, engine):
    app = main({}, **{**settings, "allowed_hosts": "logs.example.com"})
    webtest.TestApp(app, extra_environ={"HTTP_HOST": "evil.example"}).get("/x", status=400)
    samples = scrape(webtest.TestApp(app, extra_environ={"HTTP_HOST": "logs.example.com"}))
    assert value(samples, "collector_http_responses_total", route="unrouted",
                 status="400") == 1


def test_counters_move_after_uploads_and_refusals(testapp, ticket, factory, dbsession):
    before = scrape(testapp)
    body = b"log line\n" * 1000
    testapp.post("/api/v1/archives/", upload_files=[("file", "a.log", body)],
                 headers={"Upload-Token": ticket.token}, status=201)
    # tus: creation with the whole body is an archive at once — no tus code counts it.
    testapp.post("/api/v1/uploads/", b"x" * 300, headers={
        **V, "Upload-Token": ticket.token, "Upload-Length": "300",
        "Content-Type": "application/offset+octet-stream"}, status=201)
    # Refusals: an unknown token, a body over the limit, an empty file.
    testapp.post("/api/v1/archives/", b"y" * 50, headers={
        "Upload-Token": "nope", "Content-Type": "application/octet-stream"}, status=403)
    testapp.post("/api/v1/archives/", b"", headers={
        "Upload-Token": ticket.token, "Content-Type": "application/octet-stream"}, status=400)
    testapp.post("/api/v1/uploads/", headers={
        **V, "Upload-Token": ticket.token, "Upload-Length": str(65 * 1024**2)}, status=413)
    after = scrape(testapp)

    stored_count, stored_bytes = uploads(after, "stored")
    assert stored_count - uploads(before, "stored")[0] == 2
    assert stored_bytes - uploads(before, "stored")[1] == len(body) + 300
    assert uploads(after, "refused", "token") == (1, 50)
    assert uploads(after, "refused", "bad_request") == (1, 0)
    assert uploads(after, "refused", "too_large")[0] == 1
    assert value(after, "collector_archives") - value(before, "collector_archives") == 2
    assert value(after, "collector_archive_bytes") == len(body) + 300
    assert value(after, "collector_upload_requests_in_progress") == 0


def test_an_upload_that_fails_is_counted_failed_not_stored(testapp, ticket, monkeypatch):
    from collector.tickets import services as tickets

    def broken(*args):
        raise RuntimeError("database gone")

    monkeypatch.setattr(tickets, "consume_attempt", broken)
    testapp.post("/api/v1/archives/", b"z" * 10, headers={
        "Upload-Token": ticket.token, "Content-Type": "application/octet-stream"}, status=500)
    samples = scrape(testapp)
    assert uploads(samples, "failed", "error") == (1, 10)
    assert uploads(samples, "stored") == (0, 0)


def test_a_terminated_upload_is_counted_with_its_bytes(testapp, ticket):
    headers = {**V, "Upload-Token": ticket.token}
    url = testapp.post("/api/v1/uploads/", b"t" * 700, headers={
        **headers, "Upload-Length": "1000",
        "Content-Type": "application/offset+octet-stream"}, status=201).headers["Location"]
    path = "/" + url.split("/", 3)[3]
    testapp.delete(path, headers=headers, status=204)
    testapp.delete(path, headers=headers, status=404)  # gone: not counted twice
    samples = scrape(testapp)
    assert uploads(samples, "terminated") == (1, 700)
    assert uploads(samples, "stored") == (0, 0)


def test_open_resumable_uploads(testapp, ticket):
    for _ in range(2):
        testapp.post("/api/v1/uploads/", headers={**V, "Upload-Token": ticket.token,
                                                  "Upload-Length": "10"}, status=201)
    assert value(scrape(testapp), "collector_resumable_uploads_open") == 2


def test_database_down_still_answers(app):
    state = metrics.StateCollector(create_engine("sqlite:////nonexistent/dir/db.sqlite3"),
                                   app.registry["archive_storage"], app.registry.settings)
    families = {family.name: family for family in state.collect()}
    assert families["collector_database_up"].samples[0].value == 0
    assert families["collector_storage_free_bytes"].samples[0].value > 0
    assert "collector_archives" not in families


def test_state_is_read_once_per_ttl(app, monkeypatch):
    monkeypatch.setattr(metrics, "STATE_TTL", 60.0)
    state = metrics.StateCollector(app.registry["db_engine"], app.registry["archive_storage"],
                                   app.registry.settings)
    reads = []
    original = state._read
    monkeypatch.setattr(state, "_read", lambda: reads.append(1) or original())
    list(state.collect())
    list(state.collect())
    assert len(reads) == 1


def test_threads_of_a_real_server_lose_no_count(live_server):
    url = live_server + "/api/v1/check/health/"

    def get(_):
        with urllib.request.urlopen(url, timeout=10) as res:
            return res.status

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        assert set(pool.map(get, range(400))) == {200}
    request = urllib.request.Request(live_server + "/metrics", headers=AUTH)
    with urllib.request.urlopen(request, timeout=10) as res:
        text = res.read().decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert value(samples, "collector_http_request_duration_seconds_count",
                 route="api.check.health", method="GET") == 400
    assert value(samples, "collector_http_responses_total", route="api.check.health",
                 status="200") == 400


def test_archives_waiting_for_their_md5_are_a_gauge(testapp, ticket):
    """An archive over 4 MiB waits for the background md5 (no worker in these tests)."""
    assert value(scrape(testapp), "collector_archives_md5_pending") == 0
    for size in (4 * 1024**2 + 1, 1000):
        testapp.post("/api/v1/archives/", b"z" * size, headers={
            "Upload-Token": ticket.token, "Content-Type": "application/octet-stream"},
            status=201)
    assert value(scrape(testapp), "collector_archives_md5_pending") == 1
