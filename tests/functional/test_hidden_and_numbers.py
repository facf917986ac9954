"""What a caller may not see answers exactly as what does not exist; one range of ticket
numbers everywhere, and number conflicts that are 409s revealing nothing."""

import concurrent.futures
import re
import threading

import pytest
import webtest

from collector.tickets.models import NUMBER_MAX

ENV = {"HTTP_HOST": "localhost", "REMOTE_ADDR": "10.0.0.9"}


@pytest.fixture
def world(testapp, factory, staff):
    """``staff`` is not a member of ``vault`` (restricted, ticket 501 with an archive);
    ``open`` has ticket 601, where ``staff`` works."""
    member = factory.user("member")
    vault = factory.platform("vault", restricted=True, members=[member])
    hidden = factory.ticket(vault, 501)
    factory.ticket(factory.platform("open"), 601)
    archive = testapp.post("/api/v1/archives/", upload_files=[("file", "a.log", b"x\n")],
                           headers={"Upload-Token": hidden.token}, status=201).json["id"]
    return {"archive": archive, "missing_archive": archive + 1000}


def _api(testapp, method, path, headers, body=None):
    call = getattr(testapp, f"{method.lower()}_json" if body is not None else method.lower())
    args = (path, body) if body is not None else (path,)
    return call(*args, headers=headers, expect_errors=True)


# Each pair: the same request on something hidden and on something that does not exist.
API_PAIRS = [
    ("GET", "/api/v1/tickets/501/", "/api/v1/tickets/502/", None),
    ("PATCH", "/api/v1/tickets/501/", "/api/v1/tickets/502/", {"note": "x"}),
    ("PUT", "/api/v1/tickets/501/", "/api/v1/tickets/502/", {"number": 501,
                                                             "platform": "open"}),
    ("DELETE", "/api/v1/tickets/501/", "/api/v1/tickets/502/", None),
    ("POST", "/api/v1/tickets/501/token/", "/api/v1/tickets/502/token/", {}),
    ("GET", "/api/v1/tickets/501/search?q=x", "/api/v1/tickets/502/search?q=x", None),
    ("GET", "/api/v1/platforms/vault/", "/api/v1/platforms/nope/", None),
    ("PATCH", "/api/v1/platforms/vault/", "/api/v1/platforms/nope/", {"pretty_name": "x"}),
    ("DELETE", "/api/v1/platforms/vault/", "/api/v1/platforms/nope/", None),
    ("GET", "/api/v1/archives/{a}/", "/api/v1/archives/{m}/", None),
    ("PATCH", "/api/v1/archives/{a}/", "/api/v1/archives/{m}/", {"name": "b.log"}),
    ("DELETE", "/api/v1/archives/{a}/", "/api/v1/archives/{m}/", None),
    ("GET", "/api/v1/archives/{a}/download", "/api/v1/archives/{m}/download", None),
    ("GET", "/api/v1/archives/{a}/members/", "/api/v1/archives/{m}/members/", None),
    ("GET", "/api/v1/archives/{a}/search?q=x", "/api/v1/archives/{m}/search?q=x", None),
]


@pytest.mark.parametrize("method,hidden,missing,body", API_PAIRS)
def test_api_answers_a_hidden_thing_as_a_missing_one(testapp, world, staff, method, hidden,
                                                     missing, body):
    ids = {"a": world["archive"], "m": world["missing_archive"]}
    seen = _api(testapp, method, hidden.format(**ids), staff.headers, body)
    absent = _api(testapp, method, missing.format(**ids), staff.headers, body)
    assert seen.status_int == absent.status_int == 404
    assert seen.json == absent.json


def _page(res):
    """A page without what changes from one request to the next: the CSRF token, and the
    storage gauge (the disk's live figures, the same for every caller)."""
    page = re.sub(r'name="csrf_token" value="[^"]*"', "", res.text)
    return re.sub(r'<div class="storage-gauge.*?</div>', "", page, flags=re.S)


PAGE_PAIRS = [
    ("/tickets/501", "/tickets/502"),
    ("/platforms/vault/", "/platforms/nope/"),
    ("/platforms/vault/edit", "/platforms/nope/edit"),
    ("/platforms/vault/tickets/501/", "/platforms/vault/tickets/502/"),
    ("/platforms/vault/tickets/501/edit", "/platforms/vault/tickets/502/edit"),
    ("/platforms/vault/tickets/501/archives/{a}/download",
     "/platforms/vault/tickets/501/archives/{m}/download"),
    ("/archives/{a}/download", "/archives/{m}/download"),
]


@pytest.mark.parametrize("hidden,missing", PAGE_PAIRS)
def test_pages_answer_a_hidden_thing_as_a_missing_one(app, world, staff, hidden, missing):
    ids = {"a": world["archive"], "m": world["missing_archive"]}
    # A browser each: a session cookie changes the page (flash messages are read).
    seen, absent = (webtest.TestApp(app, extra_environ=ENV).get(
        path.format(**ids), headers=staff.headers, expect_errors=True)
        for path in (hidden, missing))
    assert seen.status_int == absent.status_int == 404
    assert _page(seen) == _page(absent)


def test_a_hidden_platform_is_refused_as_a_missing_one(testapp, world, staff):
    def create(platform):
        return testapp.post_json("/api/v1/tickets/", {"number": 700, "platform": platform},
                                 headers=staff.headers, expect_errors=True)

    seen, absent = create("vault"), create("nope")
    assert seen.status_int == absent.status_int == 404
    assert seen.json["detail"].replace("vault", "X") == absent.json["detail"].replace("nope",
                                                                                       "X")
    # Moving a ticket there, likewise.
    moved = testapp.patch_json("/api/v1/tickets/601/", {"platform": "vault"},
                               headers=staff.headers, status=404)
    assert moved.json["detail"] == "platform vault does not exist"


def test_moving_an_archive_to_a_hidden_ticket_is_as_to_a_missing_one(testapp, factory,
                                                                     world, staff):
    ticket = factory.ticket(factory.platform("mine"), 801)
    archive = testapp.post("/api/v1/archives/", upload_files=[("file", "b.log", b"y\n")],
                           headers={"Upload-Token": ticket.token}, status=201).json["id"]
    seen = testapp.patch_json(f"/api/v1/archives/{archive}/", {"ticket": 501},
                              headers=staff.headers, status=404).json["detail"]
    absent = testapp.patch_json(f"/api/v1/archives/{archive}/", {"ticket": 502},
                                headers=staff.headers, status=404).json["detail"]
    assert seen.replace("501", "N") == absent.replace("502", "N")


def test_a_number_conflict_does_not_tell_a_hidden_ticket_from_a_visible_one(testapp, world,
                                                                             staff):
    def create(number):
        return testapp.post_json("/api/v1/tickets/", {"number": number, "platform": "open"},
                                 headers=staff.headers, status=409).json["detail"]

    def renumber(number):
        return testapp.patch_json("/api/v1/tickets/601/", {"number": number},
                                  headers=staff.headers, status=409).json["detail"]

    testapp.post_json("/api/v1/tickets/", {"number": 602, "platform": "open"},
                      headers=staff.headers, status=201)
    assert create(501).replace("501", "N") == create(602).replace("602", "N")
    assert renumber(501).replace("501", "N") == renumber(602).replace("602", "N")
    assert "vault" not in create(501) and "restricted" not in create(501)


# --- one range of ticket numbers ---------------------------------------------------------

@pytest.mark.parametrize("number", [0, -1, NUMBER_MAX + 1, 2 ** 62, 2 ** 63, 10 ** 30, 1.5,
                                    True, "٣", "１２", "²", None, "", [1]])
def test_numbers_outside_the_range_are_400_on_every_way_in(testapp, factory, staff, number):
    factory.platform("open")
    factory.ticket(factory.platform("other"), 42)
    body = {"number": number, "platform": "open"}
    testapp.post_json("/api/v1/tickets/", body, headers=staff.headers, status=400)
    testapp.put_json("/api/v1/tickets/42/", body, headers=staff.headers, status=400)
    if number not in (None, ""):  # a PATCH leaves out a null field
        testapp.patch_json("/api/v1/tickets/42/", {"number": number},
                           headers=staff.headers, status=400)


@pytest.mark.parametrize("number", ["0", "-5", str(NUMBER_MAX + 1), "9" * 30, "٣", "１２",
                                    "²", "1e3", " "])
def test_the_ticket_form_refuses_numbers_outside_the_range(app, factory, staff, number,
                                                           web_login):
    factory.platform("open")
    browser = web_login(webtest.TestApp(app, extra_environ=ENV), staff)
    form = browser.get("/tickets/new").forms["ticket-form"]
    form["number"], form["platform"] = number, "open"
    page = form.submit(status=400)
    assert "Traceback" not in page.text


def test_the_highest_number_works_everywhere(testapp, factory, staff, app, web_login):
    factory.platform("open")
    testapp.post_json("/api/v1/tickets/", {"number": NUMBER_MAX, "platform": "open"},
                      headers=staff.headers, status=201)
    testapp.get(f"/api/v1/tickets/{NUMBER_MAX}/", headers=staff.headers, status=200)
    assert testapp.get(f"/api/v1/tickets/?number={NUMBER_MAX}",
                       headers=staff.headers).json[0]["number"] == NUMBER_MAX
    browser = web_login(webtest.TestApp(app, extra_environ=ENV), staff)
    browser.get(f"/tickets/{NUMBER_MAX}", status=(200, 301, 302, 303))
    assert f"ticket-{NUMBER_MAX}" in browser.get(f"/tickets/?q={NUMBER_MAX}").text
    # Past the range: not a number of ours, so nothing and never a 500.
    testapp.get(f"/api/v1/tickets/{NUMBER_MAX + 1}/", headers=staff.headers, status=404)
    browser.get(f"/tickets/?q={NUMBER_MAX + 1}", status=200)


def _together(count, call):
    start = threading.Barrier(count)

    def run(i):
        start.wait()
        return call(i)

    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        return sorted(pool.map(run, range(count)))


@pytest.mark.parametrize("parallel", [2, 6])
@pytest.mark.commits  # the requests run in parallel threads
@pytest.mark.sqlite  # unique numbers under concurrency, per engine
def test_parallel_renumbering_onto_one_number_is_one_200_and_409s(app, factory, staff,
                                                                  parallel):
    platform = factory.platform("open")
    numbers = [factory.ticket(platform, 900 + i).number for i in range(parallel)]
    clients = [webtest.TestApp(app, extra_environ=ENV) for _ in range(parallel)]
    statuses = _together(parallel, lambda i: clients[i].patch_json(
        f"/api/v1/tickets/{numbers[i]}/", {"number": 999}, headers=staff.headers,
        expect_errors=True).status_int)
    assert statuses == [200] + [409] * (parallel - 1)


@pytest.mark.parametrize("parallel", [2, 6])
@pytest.mark.commits  # the requests run in parallel threads
@pytest.mark.sqlite  # unique numbers under concurrency, per engine
def test_parallel_creations_of_one_number_are_one_201_and_409s(app, factory, staff,
                                                               parallel):
    factory.platform("open")
    clients = [webtest.TestApp(app, extra_environ=ENV) for _ in range(parallel)]
    statuses = _together(parallel, lambda i: clients[i].post_json(
        "/api/v1/tickets/", {"number": 4000, "platform": "open"}, headers=staff.headers,
        expect_errors=True).status_int)
    assert statuses == [201] + [409] * (parallel - 1)


@pytest.mark.parametrize("method,hidden,missing,body", API_PAIRS)
def test_an_anonymous_caller_cannot_tell_what_exists_on_the_api(testapp, world, method,
                                                               hidden, missing, body):
    ids = {"a": world["archive"], "m": world["missing_archive"]}
    seen = _api(testapp, method, hidden.format(**ids), {}, body)
    absent = _api(testapp, method, missing.format(**ids), {}, body)
    assert seen.status_int == absent.status_int == 401
    assert seen.json == absent.json


@pytest.mark.parametrize("method,path", [
    ("GET", "/api/v1/webhooks/{}/"), ("DELETE", "/api/v1/webhooks/{}/"),
    ("GET", "/api/v1/users/{}/tokens/"), ("POST", "/api/v1/users/{}/tokens/revoke/")])
def test_an_anonymous_caller_cannot_tell_which_users_or_webhooks_exist(testapp, factory,
                                                                      admin, method, path):
    body = {} if method == "POST" else None
    factory.platform("vm6")
    hook = testapp.post_json("/api/v1/webhooks/", {
        "platform": "vm6", "url": "http://127.0.0.1:9/hook", "secret": "s" * 32},
        headers=admin.headers, status=201).json["id"]
    existing = hook if "webhooks" in path else admin.id
    seen = _api(testapp, method, path.format(existing), {}, body)
    absent = _api(testapp, method, path.format(existing + 1000), {}, body)
    assert seen.status_int == absent.status_int == 401
    assert seen.json == absent.json


@pytest.mark.parametrize("hidden,missing", PAGE_PAIRS)
def test_an_anonymous_caller_cannot_tell_what_exists_on_the_pages(app, world, hidden,
                                                                 missing):
    ids = {"a": world["archive"], "m": world["missing_archive"]}
    seen, absent = (webtest.TestApp(app, extra_environ=ENV).get(path.format(**ids),
                                                                 expect_errors=True)
                    for path in (hidden, missing))
    assert seen.status_int == absent.status_int == 303
    assert seen.location.split("next=")[0] == absent.location.split("next=")[0]
