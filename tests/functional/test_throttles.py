"""Guessing throttles under parallel requests, and sign-in failures of every kind.

Each test sends its requests from many threads at once through the real WSGI stack, so a
throttle that counts first and judges afterwards would let more than its limit through.
"""

import concurrent.futures
import threading

import pytest
import webtest
from sqlalchemy import func, select

from collector.accounts import services
from collector.accounts.models import AuthFailure
from collector.tickets import services as tickets

ENV = {"HTTP_HOST": "localhost", "REMOTE_ADDR": "10.0.0.9"}


def _client(app, address="10.0.0.9"):
    return webtest.TestApp(app, extra_environ={**ENV, "REMOTE_ADDR": address})


def _in_parallel(count, call, threads=6):
    """``call(i)`` for ``count`` requests on ``threads`` threads (a server's worker threads;
    each request may hold two database connections of the tests' pool); the statuses,
    sorted. The first ``threads`` requests are released together."""
    start = threading.Barrier(min(count, threads))

    def run(i):
        if i < threads:
            start.wait()
        return call(i)

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return sorted(pool.map(run, range(count)))


def _api_login(client, username, password, otp):
    return client.post_json("/api/v1/auth/token/", {
        "username": username, "password": password, "otp": otp}, expect_errors=True)


def _failures(dbsession):
    dbsession.expire_all()
    return dbsession.scalar(select(func.count()).select_from(AuthFailure))


# --- race-free limits --------------------------------------------------------------------

@pytest.mark.parametrize("parallel", [12, 40])
@pytest.mark.commits  # the requests run in parallel threads
@pytest.mark.sqlite  # the race-free SQL (INSERT … ON CONFLICT, conditional UPDATE) per engine
def test_parallel_wrong_passwords_for_one_user_are_judged_at_most_the_limit(
        app, factory, parallel):
    user = factory.user("alice")
    client = _client(app)
    statuses = _in_parallel(parallel, lambda i: _api_login(client, "alice", "wrong pass",
                                                           "123456").status_int)
    limit = services.THROTTLE_PER_USER_ADDRESS
    assert statuses == [401] * limit + [429] * (parallel - limit)
    assert _failures(factory.session) == limit
    # The right password and code from this address are refused too, until the window ends.
    assert _api_login(client, "alice", user.password, factory.otp(user)).status_int == 429


@pytest.mark.parametrize("parallel", [30, 60])
@pytest.mark.commits  # the requests run in parallel threads
@pytest.mark.sqlite  # the race-free SQL (INSERT … ON CONFLICT, conditional UPDATE) per engine
def test_parallel_guesses_from_one_address_are_judged_at_most_the_limit(
        app, factory, parallel):
    client = _client(app, "192.0.2.50")
    statuses = _in_parallel(parallel, lambda i: _api_login(
        client, f"ghost{i}", "not the password", "123456").status_int)
    limit = services.THROTTLE_PER_ADDRESS
    assert statuses == [401] * limit + [429] * (parallel - limit)


@pytest.mark.parametrize("parallel", [16, 48])
@pytest.mark.commits  # the requests run in parallel threads
@pytest.mark.sqlite  # the race-free SQL (INSERT … ON CONFLICT, conditional UPDATE) per engine
def test_parallel_web_password_guesses_are_judged_at_most_the_limit(
        app, factory, parallel):
    factory.user("bob")

    def guess(i):
        client = _client(app, "192.0.2.60")
        form = client.get("/login").forms["login-form"]
        form["username"], form["password"] = "bob", "not the password"
        return form.submit(expect_errors=True).status_int

    statuses = _in_parallel(parallel, guess)
    limit = services.THROTTLE_PER_USER_ADDRESS
    assert statuses == [401] * limit + [429] * (parallel - limit)


@pytest.mark.parametrize("parallel", [30, 60])
@pytest.mark.parametrize("path,method,refused", [
    ("/api/v1/check/token/not-a-real-token/", "get", 404),
    ("/api/v1/archives/", "post", 403),
    ("/api/v1/uploads/", "post", 403),
])
@pytest.mark.commits  # the requests run in parallel threads
@pytest.mark.sqlite  # the race-free SQL (INSERT … ON CONFLICT, conditional UPDATE) per engine
def test_parallel_unknown_upload_tokens_are_judged_at_most_the_limit(
        app, factory, parallel, path, method, refused):
    client = _client(app, "192.0.2.70")
    headers = {"Upload-Token": "not-a-real-token", "Tus-Resumable": "1.0.0",
               "Upload-Length": "10"}

    def guess(i):
        if method == "get":
            return client.get(path, expect_errors=True).status_int
        return client.post(path, b"x", headers=headers, expect_errors=True).status_int

    statuses = _in_parallel(parallel, guess)
    limit = tickets.TOKEN_THROTTLE_PER_ADDRESS
    assert statuses == sorted([refused] * limit + [429] * (parallel - limit))


@pytest.mark.commits  # the requests run in parallel threads
@pytest.mark.sqlite  # the race-free SQL (INSERT … ON CONFLICT, conditional UPDATE) per engine
def test_valid_tokens_in_parallel_take_no_slot(app, factory):
    ticket = factory.ticket(factory.platform())
    client = _client(app, "192.0.2.80")
    statuses = _in_parallel(40, lambda i: client.get(
        f"/api/v1/check/token/{ticket.token}/", expect_errors=True).status_int)
    assert statuses == [200] * 40
    for _ in range(tickets.TOKEN_THROTTLE_PER_ADDRESS):
        client.get("/api/v1/check/token/nope/", status=404)
    client.get(f"/api/v1/check/token/{ticket.token}/", status=429)


# --- nobody can lock an account for everyone ---------------------------------------------

def test_failures_from_one_address_do_not_lock_the_user_elsewhere(app, factory, web_login):
    user = factory.user("admin", admin=True)
    attacker = _client(app, "198.51.100.1")
    for _ in range(services.THROTTLE_PER_USER_ADDRESS):
        assert _api_login(attacker, "admin", "wrong", "123456").status_int == 401
    assert _api_login(attacker, "admin", user.password, factory.otp(user)).status_int == 429
    # The real admin, elsewhere, signs in through the API and the pages.
    assert _api_login(_client(app, "203.0.113.5"), "admin", user.password,
                      factory.otp(user)).status_int == 200
    web_login(_client(app, "203.0.113.6"), user)


def test_the_users_ceiling_spares_an_address_without_failures(app, factory, monkeypatch,
                                                               web_login):
    monkeypatch.setattr(services, "THROTTLE_PER_USER", 6)
    user = factory.user("admin", admin=True)
    # A botnet: two guesses from each of many addresses, past the user's ceiling.
    for n in range(6):
        for _ in range(2):
            _api_login(_client(app, f"198.51.100.{n}"), "admin", "wrong", "123456")
    # An address with a failure meets the ceiling, even with the right credentials...
    guesser = _client(app, "198.51.100.1")
    assert _api_login(guesser, "admin", user.password, factory.otp(user)).status_int == 429
    # ...one without failures does not: the user is never locked out for everyone.
    assert _api_login(_client(app, "203.0.113.7"), "admin", user.password,
                      factory.otp(user)).status_int == 200
    web_login(_client(app, "203.0.113.8"), user)


# --- one-time codes: malformed, replayed, or a failure of any kind ----------------------

# Each is a "digit" to str.isdigit() or to int(), and none is an ASCII digit.
NON_ASCII_CODES = ["²", "²²²²²²", "٣٣٣٣٣٣", "۱۲۳۴۵۶", "१२३४५६", "１２３４５６", "①②③④⑤⑥",
                   "߁߂߃߄߅߆", "12345٦", "𝟏𝟐𝟑𝟒𝟓𝟔", "\u0661\u0662\u0663 456"]


@pytest.mark.parametrize("code", NON_ASCII_CODES)
def test_a_non_ascii_code_answers_alike_for_a_right_and_a_wrong_password(app, factory,
                                                                         code):
    user = factory.user("alice")
    client = _client(app)
    right = _api_login(client, "alice", user.password, code)
    wrong = _api_login(client, "alice", "wrong password", code)
    assert right.status_int == wrong.status_int == 401
    assert right.json == wrong.json == {"detail": "wrong username, password or one-time code"}
    assert _failures(factory.session) == 2


def test_non_ascii_codes_count_towards_the_throttle(app, factory):
    user = factory.user("alice")
    client = _client(app)
    for code in NON_ASCII_CODES[:services.THROTTLE_PER_USER_ADDRESS]:
        assert _api_login(client, "alice", user.password, code).status_int == 401
    assert _api_login(client, "alice", user.password, factory.otp(user)).status_int == 429


@pytest.mark.parametrize("code", ["²²²²²²", "٣٣٣٣٣٣", "１２３４５６", "①②③④⑤⑥"])
def test_a_non_ascii_code_on_the_verify_page_is_a_wrong_code(app, factory, code):
    user = factory.user("alice")
    client = _client(app)
    form = client.get("/login").forms["login-form"]
    form["username"], form["password"] = "alice", user.password
    form.submit(status=303)
    form = client.get("/verify").forms["verify-form"]
    form["code"] = code
    assert "That code is wrong" in form.submit(status=401).text
    assert _failures(factory.session) == 1


def test_a_failure_of_any_cause_is_recorded_and_throttled(app, factory, monkeypatch):
    user = factory.user("alice")

    def broken(*args, **kwargs):
        raise RuntimeError("a bug while judging")

    monkeypatch.setattr(services, "check_password", broken)
    client = _client(app)
    for _ in range(services.THROTTLE_PER_USER_ADDRESS):
        res = _api_login(client, "alice", user.password, factory.otp(user))
        assert res.status_int == 500 and "Traceback" not in res.text
    assert _failures(factory.session) == services.THROTTLE_PER_USER_ADDRESS
    monkeypatch.undo()
    assert _api_login(client, "alice", user.password, factory.otp(user)).status_int == 429


@pytest.mark.parametrize("parallel", [2, 8, 16])
@pytest.mark.commits  # the requests run in parallel threads
@pytest.mark.sqlite  # the race-free SQL (INSERT … ON CONFLICT, conditional UPDATE) per engine
def test_a_code_sent_in_parallel_is_accepted_once(app, factory, parallel):
    user = factory.user("alice")
    code = factory.otp(user)
    statuses = _in_parallel(parallel, lambda i: _api_login(
        _client(app, f"10.1.0.{i}"), "alice", user.password, code).status_int,
        threads=parallel)
    assert statuses == [200] + [401] * (parallel - 1)


def test_admins_see_the_throttles_in_force(app, factory, admin):
    factory.user("alice")
    attacker = _client(app, "198.51.100.9")
    for _ in range(services.THROTTLE_PER_USER_ADDRESS):
        _api_login(attacker, "alice", "wrong", "123456")
    page = _client(app, "203.0.113.9").get("/admin/users/", headers=admin.headers)
    row = page.html.select_one("#lockout-list tr.lockout-user-address")
    assert "alice" in row.text and "198.51.100.9" in row.text
    assert str(services.THROTTLE_PER_USER_ADDRESS) in row.text
    for n in range(services.THROTTLE_PER_ADDRESS):
        _api_login(_client(app, "198.51.100.10"), f"ghost{n}", "wrong", "123456")
    page = _client(app, "203.0.113.9").get("/admin/users/", headers=admin.headers)
    assert "198.51.100.10" in page.html.select_one("#lockout-list tr.lockout-address").text


def test_no_throttle_in_force_is_said(app, factory, admin):
    page = _client(app).get("/admin/users/", headers=admin.headers)
    assert page.html.find(id="no-lockouts")


# --- other digits on every way a number or a code comes in -------------------------------

OTHER_DIGITS = ["²", "²³", "٣", "１２", "①", "߁", "12٣"]


@pytest.mark.parametrize("digits", OTHER_DIGITS)
def test_other_digits_are_plain_wrong_input_on_every_page(app, factory, web_login, digits):
    """``str.isdigit()`` then ``int()`` made 500s of these: the ticket search, a personal
    token's lifetime, the audit log's offset. Each is now what any other text is."""
    staff = factory.user("staff", admin=True)
    browser = web_login(_client(app), staff)
    assert browser.get("/tickets/", params={"q": digits}).status_int == 200
    form = browser.get("/account/").forms["token-form"]
    form["name"], form["lifetime_days"] = "ci", digits
    assert "the lifetime is a number of days" in form.submit(status=400).text
    assert browser.get("/admin/audit", params={"offset": digits}).status_int == 200


@pytest.mark.sqlite
@pytest.mark.commits  # a transaction of its own, as the token check's
def test_token_counters_commit_without_waiting_for_the_disk(engine, db_backend):
    """Every token check from one address updates that address's counter row, locked
    until the commit returns: on PostgreSQL that transaction does not wait for the WAL
    flush (``synchronous_commit`` off for it alone), or the checks would run one disk
    flush at a time. The setting ends with the transaction."""
    from sqlalchemy import text

    from collector.accounts import throttle
    from collector.db import utcnow

    show = text("SHOW synchronous_commit")
    with engine.begin() as connection:
        throttle.no_flush_wait(connection)
        if db_backend == "postgresql":
            assert connection.execute(show).scalar() == "off"
        assert throttle.take(connection, "test-key", 5, utcnow()) is None
    with engine.connect() as connection:
        if db_backend == "postgresql":
            assert connection.execute(show).scalar() == "on"
        assert throttle.used(connection, "test-key", utcnow()) == 1
