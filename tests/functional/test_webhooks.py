"""Help-desk webhooks against a real HTTP receiver on 127.0.0.1: the outbox, signatures,
retries with backoff (an injected clock, no sleeping), attempts, claims, admin pages, ACL."""

import datetime as dt
import json
import socket
import threading

import pytest
import webtest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select
from webhook_receiver import SECRET, Receiver, verify_as_the_readme_says

from collector import main
from collector.webhooks import services
from collector.webhooks.models import WebhookAttempt, WebhookDelivery

# The worker's clock in these tests: a minute ahead of the wall clock when the test starts,
# so that every event the test records (at wall-clock time) is already due at T0.
T0 = None


@pytest.fixture(autouse=True)
def _worker_clock():
    global T0
    T0 = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(minutes=1)


@pytest.fixture
def receiver():
    made = []

    def make(statuses=(200,)):
        made.append(Receiver(statuses))
        return made[-1]

    yield make
    for one in made:
        one.close()


@pytest.fixture
def ticket(factory):
    return factory.ticket(factory.platform("vm6"), 4242, attempts=3)


def add_webhook(testapp, admin, url, platform="vm6", secret=SECRET):
    return testapp.post_json("/api/v1/webhooks/", {"platform": platform, "url": url,
                                                   "secret": secret},
                             headers=admin.headers, status=201).json


def deliveries(dbsession):
    dbsession.expire_all()
    return dbsession.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()


def upload(testapp, ticket, body=b"log line\n" * 100, status=201):
    return testapp.post("/api/v1/archives/", upload_files=[("file", "app.log", body)],
                        headers={"Upload-Token": ticket.token}, status=status)


def test_upload_event_is_signed_retried_with_backoff_and_recorded(
        testapp, app, engine, ticket, admin, receiver, dbsession):
    help_desk = receiver([500, 200])
    hook = add_webhook(testapp, admin, help_desk.url)
    archive = upload(testapp, ticket).json
    # The upload itself sent nothing: the event waits in the outbox.
    assert help_desk.received == []
    [row] = deliveries(dbsession)
    assert (row.event, row.state, row.attempts, row.webhook_id) == (
        "archive.uploaded", "pending", 0, hook["id"])

    settings = app.registry.settings
    assert services.deliver_pending(engine, settings, now=T0) == [(row.id, "retry")]
    [row] = deliveries(dbsession)
    assert (row.state, row.attempts, row.last_status) == ("pending", 1, 500)
    assert row.next_attempt_at == T0 + dt.timedelta(seconds=30)
    # Not due yet: nothing is sent.
    assert services.deliver_pending(engine, settings, now=T0 + dt.timedelta(seconds=29)) == []
    assert services.deliver_pending(engine, settings, now=T0 + dt.timedelta(seconds=30)) == [
        (row.id, "delivered")]
    [row] = deliveries(dbsession)
    assert (row.state, row.attempts, row.last_status, row.last_error) == (
        "delivered", 2, 200, "")
    attempts = dbsession.scalars(select(WebhookAttempt).where(
        WebhookAttempt.delivery_id == row.id).order_by(WebhookAttempt.id)).all()
    assert [(a.status, a.time) for a in attempts] == [
        (500, T0), (200, T0 + dt.timedelta(seconds=30))]
    assert "HTTP 500" in attempts[0].error and attempts[1].error == ""

    assert len(help_desk.received) == 2
    for (headers, body), when in zip(help_desk.received, (T0, T0 + dt.timedelta(seconds=30))):
        assert verify_as_the_readme_says(headers, body, SECRET, when.timestamp())
        assert not verify_as_the_readme_says(headers, body, "another-secret-0123456",
                                             when.timestamp())
        assert not verify_as_the_readme_says(headers, body + b" ", SECRET, when.timestamp())
        assert not verify_as_the_readme_says(headers, body, SECRET, when.timestamp() + 301)
        assert headers["Content-Type"] == "application/json"
        assert headers["X-Collector-Event"] == "archive.uploaded"
        assert headers["X-Collector-Delivery"] == row.event_id
    event = json.loads(help_desk.received[1][1])
    assert event["event"] == "archive.uploaded" and event["id"] == row.event_id
    assert (event["ticket"], event["platform"]) == (4242, "vm6")
    assert event["archive"]["id"] == archive["id"]
    assert event["archive"]["sha256"] == archive["sha256"]
    assert event["archive"]["size"] == archive["size"]
    # The same event both times: a receiver can drop the duplicate by its id.
    assert help_desk.received[0][1] == help_desk.received[1][1]


def test_backoff_doubles_to_its_cap_and_gives_up_after_a_day(
        testapp, app, engine, ticket, admin, receiver, dbsession):
    dead = receiver([503])
    add_webhook(testapp, admin, dead.url)
    testapp.patch_json(f"/api/v1/tickets/{ticket.number}/", {"resolved": True},
                       headers=admin.headers, status=200)
    [row] = deliveries(dbsession)
    assert row.event == "ticket.resolved"
    created = row.time_create
    settings = app.registry.settings
    clock, waits, outcome = created, [], None
    while outcome != "failed":
        [(_, outcome)] = services.deliver_pending(engine, settings, now=clock)
        [row] = deliveries(dbsession)
        if outcome == "retry":
            waits.append((row.next_attempt_at - clock).total_seconds())
            clock = row.next_attempt_at
    assert waits[:8] == [30, 60, 120, 240, 480, 960, 1920, 3600]
    assert set(waits[7:]) == {3600}
    assert clock - created <= dt.timedelta(hours=24)
    assert clock + dt.timedelta(hours=1) - created > dt.timedelta(hours=24)
    assert (row.state, row.attempts) == ("failed", len(waits) + 1)
    assert len(dead.received) == row.attempts
    # Given up: nothing more is sent, however late.
    assert services.deliver_pending(engine, settings, now=clock + dt.timedelta(days=9)) == []


def test_refused_upload_event_survives_the_rollback(testapp, app, engine, factory, admin,
                                                    receiver, dbsession):
    help_desk = receiver()
    ticket = factory.ticket(factory.platform("vm6"), 99, attempts=0)
    add_webhook(testapp, admin, help_desk.url)
    testapp.post("/api/v1/archives/", b"data", headers={
        "Upload-Token": ticket.token, "Content-Type": "application/octet-stream"}, status=423)
    [row] = deliveries(dbsession)
    assert row.event == "upload.failed"
    assert (row.payload["ticket"], row.payload["reason"], row.payload["status"],
            row.payload["outcome"]) == (99, "no_attempts", 423, "refused")
    assert services.deliver_pending(engine, app.registry.settings, now=T0) == [
        (row.id, "delivered")]
    assert json.loads(help_desk.received[0][1])["event"] == "upload.failed"


def test_only_the_ticket_platform_webhooks_get_its_events(testapp, engine, factory, admin,
                                                          receiver, dbsession):
    vm6 = factory.platform("vm6")
    factory.platform("dci")
    ticket = factory.ticket(vm6, 5)
    add_webhook(testapp, admin, receiver().url, platform="dci")
    mine = add_webhook(testapp, admin, receiver().url, platform="vm6")
    testapp.patch_json("/api/v1/webhooks/{}/".format(
        add_webhook(testapp, admin, receiver().url)["id"]), {"active": False},
        headers=admin.headers, status=200)
    upload(testapp, ticket)
    # Neither the other platform's webhook nor the disabled one gets the event.
    assert [(d.webhook_id, d.event) for d in deliveries(dbsession)] == [
        (mine["id"], "archive.uploaded")]


def test_a_disabled_webhooks_deliveries_wait_until_it_is_enabled(
        testapp, app, engine, ticket, admin, receiver, dbsession):
    help_desk = receiver()
    hook = add_webhook(testapp, admin, help_desk.url)
    upload(testapp, ticket)
    testapp.patch_json(f"/api/v1/webhooks/{hook['id']}/", {"active": False},
                       headers=admin.headers, status=200)
    settings = app.registry.settings
    # Held: not sent, no attempt counted, still pending, whatever the hour.
    assert services.deliver_pending(engine, settings, now=T0 + dt.timedelta(hours=2)) == []
    [row] = deliveries(dbsession)
    assert (row.state, row.attempts, help_desk.received) == ("pending", 0, [])
    testapp.patch_json(f"/api/v1/webhooks/{hook['id']}/", {"active": True},
                       headers=admin.headers, status=200)
    assert services.deliver_pending(engine, settings, now=T0 + dt.timedelta(hours=2)) == [
        (row.id, "delivered")]
    assert len(help_desk.received) == 1


def test_a_stopping_worker_ends_after_its_delivery_and_gives_back_its_other_claims(
        testapp, app, engine, ticket, admin, receiver, dbsession):
    """A server that stops (SIGTERM) lets the delivery being made finish; the rest of the
    pass's claims are free at once for another worker, not after their lease."""
    help_desk = receiver()
    add_webhook(testapp, admin, help_desk.url)
    for _ in range(3):
        upload(testapp, ticket)
    sent = []

    def stopping():  # the signal comes while the first delivery is being made
        return bool(sent) or bool(sent.append(True))

    settings = app.registry.settings
    [(first, outcome)] = services.deliver_pending(engine, settings, now=T0,
                                                  worker="stopping", stopping=stopping)
    assert outcome == "delivered" and len(help_desk.received) == 1
    rows = deliveries(dbsession)
    assert [(r.state, r.claimed_by) for r in rows if r.id != first] == [("pending", None)] * 2
    # Free now, long before the stopped worker's lease would have ended.
    assert len(services.claim(engine, "another", T0, 10, 60)) == 2


@pytest.mark.commits  # the workers are threads
@pytest.mark.sqlite  # FOR UPDATE SKIP LOCKED on PostgreSQL, one writer on SQLite
def test_two_workers_never_deliver_one_event_twice(testapp, app, engine, factory, admin,
                                                   receiver, dbsession):
    help_desk = receiver()
    platform = factory.platform("vm6")
    add_webhook(testapp, admin, help_desk.url)
    for number in range(10, 22):
        factory.ticket(platform, number)
        testapp.patch_json(f"/api/v1/tickets/{number}/", {"resolved": True},
                           headers=admin.headers, status=200)
    # A claim is exclusive: a second worker finds nothing left to take.
    first = services.claim(engine, "worker-a", T0, 5, 60)
    second = services.claim(engine, "worker-b", T0, 100, 60)
    assert len(first) == 5 and len(second) == 7 and not set(first) & set(second)
    assert services.claim(engine, "worker-c", T0, 100, 60) == []
    # A claim outlived by its lease belonged to a dead worker: it is taken again.
    assert len(services.claim(engine, "worker-c", T0 + dt.timedelta(seconds=61), 100, 60)) == 12

    # Four workers at once over the same due rows: each event is received exactly once.
    later = T0 + dt.timedelta(minutes=10)
    results, barrier = [], threading.Barrier(4)

    def run():
        barrier.wait()
        results.extend(services.deliver_pending(engine, app.registry.settings, now=later,
                                                limit=100))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcome for _, outcome in results) == ["delivered"] * 12
    ids = [json.loads(body)["id"] for _, body in help_desk.received]
    assert len(ids) == 12 and len(set(ids)) == 12
    assert {d.state for d in deliveries(dbsession)} == {"delivered"}


def test_a_receiver_that_never_answers_times_out(testapp, app, engine, ticket, admin,
                                                 dbsession):
    # Accepts connections (the kernel's backlog) and never answers.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        add_webhook(testapp, admin, f"http://127.0.0.1:{silent.getsockname()[1]}/")
        upload(testapp, ticket)
        settings = {**app.registry.settings, "webhooks.timeout": 0.2}
        [(delivery_id, outcome)] = services.deliver_pending(engine, settings, now=T0)
    finally:
        silent.close()
    assert outcome == "retry"
    [row] = deliveries(dbsession)
    assert row.last_status is None and "timed out" in row.last_error.lower()


def test_admin_api_and_page_show_deliveries_and_attempts(testapp, app, engine, ticket, admin,
                                                         staff, receiver, web_login):
    help_desk = receiver([500, 204])
    hook = add_webhook(testapp, admin, help_desk.url)
    upload(testapp, ticket)
    services.deliver_pending(engine, app.registry.settings, now=T0)
    res = testapp.get("/api/v1/webhooks/deliveries/?state=pending", headers=admin.headers)
    assert res.headers["X-Total-Count"] == "1"
    [delivery] = res.json
    assert (delivery["event"], delivery["attempts"], delivery["last_status"]) == (
        "archive.uploaded", 1, 500)
    assert delivery["attempt_log"][0]["status"] == 500
    assert delivery["attempt_log"][0]["time"] == T0.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert delivery["payload"]["ticket"] == 4242
    assert testapp.get("/api/v1/webhooks/deliveries/?state=delivered",
                       headers=admin.headers).json == []
    testapp.get("/api/v1/webhooks/deliveries/?state=lost", headers=admin.headers, status=400)
    assert testapp.get(f"/api/v1/webhooks/{hook['id']}/", headers=admin.headers).json["url"] \
        == help_desk.url
    assert [h["id"] for h in testapp.get("/api/v1/webhooks/", headers=admin.headers).json] \
        == [hook["id"]]

    page = web_login(webtest.TestApp(app, extra_environ={"HTTP_HOST": "localhost"}), admin)
    html = page.get("/admin/webhooks/").text
    assert help_desk.url.replace("&", "&amp;") in html
    assert f'id="delivery-{delivery["id"]}"' in html
    assert "archive.uploaded" in html and "HTTP 500" in html
    # Add one through the page, then a bad one (a readable 400, nothing stored).
    form = page.get("/admin/webhooks/").forms["create-webhook-form"]
    form["url"] = help_desk.url + "&two"
    form.submit(status=303)
    form = page.get("/admin/webhooks/").forms["create-webhook-form"]
    form["url"] = "ftp://nowhere"
    bad = form.submit(status=400)
    assert "http:// or https://" in bad.text
    assert len(testapp.get("/api/v1/webhooks/", headers=admin.headers).json) == 2


def test_a_failed_or_delivered_event_can_be_sent_again(testapp, app, engine, ticket, admin,
                                                     staff, receiver, web_login, dbsession):
    help_desk = receiver([503, 200])
    hook = add_webhook(testapp, admin, help_desk.url)
    upload(testapp, ticket)
    [first] = deliveries(dbsession)
    # Still pending: it is retried on its own.
    res = testapp.post(f"/api/v1/webhooks/deliveries/{first.id}/redeliver",
                       headers=admin.headers, status=409)
    assert "still pending" in res.json["detail"]
    settings = dict(app.registry.settings, **{"webhooks.retry_hours": 0})
    assert services.deliver_pending(engine, settings, now=T0) == [(first.id, "failed")]

    again = testapp.post(f"/api/v1/webhooks/deliveries/{first.id}/redeliver",
                         headers=admin.headers, status=201).json
    assert (again["event"], again["event_id"], again["state"], again["attempts"]) == (
        "archive.uploaded", first.event_id, "pending", 0)
    assert services.deliver_pending(engine, app.registry.settings, now=T0) == [
        (again["id"], "delivered")]
    # The same event both times (a receiver can tell by its id); the failed one stays.
    assert help_desk.received[0][1] == help_desk.received[1][1]
    assert [d.state for d in deliveries(dbsession)] == ["failed", "delivered"]
    events = testapp.get("/api/v1/audit/?action=webhook.redeliver", headers=admin.headers).json
    assert [e["action"] for e in events] == ["webhook.redeliver"]

    testapp.post("/api/v1/webhooks/deliveries/99999/redeliver", headers=admin.headers,
                 status=404)
    testapp.post(f"/api/v1/webhooks/deliveries/{first.id}/redeliver", headers=staff.headers,
                 status=403)
    testapp.patch_json(f"/api/v1/webhooks/{hook['id']}/", {"active": False},
                       headers=admin.headers, status=200)
    res = testapp.post(f"/api/v1/webhooks/deliveries/{first.id}/redeliver",
                       headers=admin.headers, status=409)
    assert "disabled" in res.json["detail"]
    testapp.patch_json(f"/api/v1/webhooks/{hook['id']}/", {"active": True},
                       headers=admin.headers, status=200)

    # The page: a button on every delivery that is not pending.
    page = web_login(webtest.TestApp(app, extra_environ={"HTTP_HOST": "localhost"}), admin)
    html = page.get("/admin/webhooks/")
    assert f'id="redeliver-{first.id}"' in html.text
    assert f'id="redeliver-{again["id"]}"' in html.text
    form = next(f for f in html.forms.values()
                if f.fields.get("delivery") and f["delivery"].value == str(first.id))
    done = form.submit(status=303).follow()
    assert "queued again as delivery" in done.text
    newest = deliveries(dbsession)[-1]
    assert (newest.state, newest.event_id) == ("pending", first.event_id)
    assert f'id="redeliver-{newest.id}"' not in done.text
    # A delivery that is not there: the page again, with a readable 404.
    bad = page.post("/admin/webhooks/redeliver", {"delivery": "nope",
                                                  "csrf_token": form["csrf_token"].value},
                    status=404)
    assert "does not exist" in bad.text


def test_webhooks_are_admin_only(testapp, app, staff, admin, factory, web_login, receiver):
    factory.platform("vm6")
    hook = add_webhook(testapp, admin, receiver().url)
    for method, path in (("get", "/api/v1/webhooks/"), ("get", "/api/v1/webhooks/deliveries/"),
                         ("get", f"/api/v1/webhooks/{hook['id']}/"),
                         ("delete", f"/api/v1/webhooks/{hook['id']}/")):
        res = getattr(testapp, method)(path, headers=staff.headers, status=403)
        assert "detail" in res.json
    testapp.post_json("/api/v1/webhooks/", {"platform": "vm6", "url": "http://x.example/"},
                      headers=staff.headers, status=403)
    testapp.get("/api/v1/webhooks/", status=401)
    page = web_login(webtest.TestApp(app, extra_environ={"HTTP_HOST": "localhost"}), staff)
    page.get("/admin/webhooks/", status=403)
    # Validation: a clear 400 with a detail.
    for body in ({"platform": "vm6", "url": "not a url"},
                 {"platform": "vm6", "url": "http://x.example/", "secret": "short"},
                 {"platform": "nope", "url": "http://x.example/"}):
        res = testapp.post_json("/api/v1/webhooks/", body, headers=admin.headers,
                                status=(404 if body["platform"] == "nope" else 400))
        assert res.json["detail"]
    made = testapp.post_json("/api/v1/webhooks/", {"platform": "vm6",
                                                   "url": "https://x.example/h"},
                             headers=admin.headers, status=201).json
    assert len(made["secret"]) >= 32  # made by the server when none is given
    testapp.delete(f"/api/v1/webhooks/{made['id']}/", headers=admin.headers, status=204)
    testapp.get(f"/api/v1/webhooks/{made['id']}/", headers=admin.headers, status=404)


@pytest.mark.commits  # the worker is a thread
def test_worker_thread_of_the_app_delivers_and_counts_in_metrics(settings, engine, factory,
                                                                 receiver, dbsession):
    token = "metrics-token-0123456789abcdef"
    app = main({}, **{**settings, "webhooks.worker": "true", "webhooks.interval": "0.05",
                      "metrics.token": token})
    try:
        testapp = webtest.TestApp(app, extra_environ={"HTTP_HOST": "localhost"})
        help_desk = receiver()
        admin = factory.user("boss", admin=True)
        admin.headers = factory.token(admin)
        ticket = factory.ticket(factory.platform("vm6"), 7)
        add_webhook(testapp, admin, help_desk.url)
        upload(testapp, ticket)
        assert help_desk.got_one.wait(30), "the worker thread delivered nothing"
        # The attempt is recorded just after the answer: wait for the worker's pass to end.
        app.registry["worker"].stop()
        [row] = deliveries(dbsession)
        assert row.state == "delivered"
        text = testapp.get("/metrics", headers={"Authorization": f"Bearer {token}"}).text
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(text)
                   for s in family.samples}
        assert samples[("collector_webhook_deliveries_total",
                        (("outcome", "delivered"),))] == 1
        assert samples[("collector_webhook_deliveries_pending", ())] == 0
    finally:
        app.registry["worker"].stop()
