"""What a search pattern may cost, through every route that compiles one: the API's archive
and ticket searches and the pages' archive and ticket searches (one code path,
``inspect.patterns``, four doors).

A pattern that would take the process's memory to compile (huge or multiplied repeat
counts, deep nesting, incompatible inline flags) is a 400 that says why, answered at once
and without the process growing; a pattern that matches with a huge backtracking stack is
given bounded windows of text; and when every search slot is taken, one more search is a
503 with ``Retry-After`` on all four routes, not a queue of worker threads.
"""

import contextlib
import resource
import threading
import time
import urllib.parse

import pytest
import webtest

from collector.archives.inspect import patterns, search, services, store

# Commits: the member index is built by a thread of the app's own.
pytestmark = pytest.mark.commits

ENV = {"HTTP_HOST": "localhost", "REMOTE_ADDR": "127.0.0.1"}
MiB = 1024 * 1024
TICKET = "/platforms/vm6/tickets/5005/"
ROUTES = ("api-archive", "api-ticket", "page-archive", "page-ticket")

# Each would make the unbounded compiler allocate gigabytes, recurse past Python's limit
# or raise something other than ``regex.error`` (all 500s, or worse, before).
HOSTILE = {
    "x{2147483647}": "repeat count is 2147483647",
    "[a-z]{7,2147483647}": "repeat count is 2147483647",
    "(?x) x { 99999 }": "repeat count is 99999",
    "(?:x{1000}){1000}": "too large once its repeats are counted",
    "(?:(?:(?:x{100}){100}){100}){100}": "too large once its repeats are counted",
    "(?:(a)|(b)|(?=c)d){999}": "too large once its repeats are counted",
    "(" * 24 + "x" + ")" * 24: "nest at most 20 deep",
    "(" * 460 + "x" + ")" * 460: "nested too deeply",
    "(?V1)" + "[" * 400 + "x" + "]" * 400: "nested too deeply",
    "(?u)x": "cannot use UNICODE flag with a bytes pattern",
    "(?V0)(?V1)x": "VERSION0 and VERSION1 flags are mutually incompatible",
    "(?a)(?L)x": "ASCII, LOCALE and UNICODE flags are mutually incompatible",
}
# Ordinary ones stay accepted, up to the bounds.
ORDINARY = [r"\d{1,5}", r"NEEDLE \d", "(?:ab){500}|NEEDLE", "a{1000}", r"(?i)needle|error",
            r"\p{L}+ 2$", "(?:(?:(?:N){2}){2}){2}|NEEDLE", "(a+a+)+b", r"(?<w>\w)(?&w)EDLE"]


@pytest.fixture
def ticket(factory):
    return factory.ticket(factory.platform("vm6"), 5005, attempts=50)


@pytest.fixture
def browser(app, staff):
    environ = {**ENV, "HTTP_AUTHORIZATION": staff.headers["Authorization"]}
    return webtest.TestApp(app, extra_environ=environ)


@pytest.fixture
def upload(testapp, ticket, admin):
    def upload(name, data):
        res = testapp.post("/api/v1/archives/", upload_files=[("file", name, data)],
                           headers={"Upload-Token": ticket.token}, status=201)
        archive_id = res.json["id"]
        first = testapp.get(f"/api/v1/archives/{archive_id}/members/", headers=admin.headers,
                            status=(200, 503))
        if first.status_int == 503:
            store.wait_for_builders()
        return archive_id

    return upload


@pytest.fixture
def archive_id(upload):
    return upload("a.log", b"a" * 5000 + b"\nNEEDLE 2\n")


def search_on(route, client, archive_id, status, **query):
    """``(answer, the reason shown)`` of one search through ``route``."""
    scope = route.split("-")[1]
    base = {("api", "archive"): f"/api/v1/archives/{archive_id}/search",
            ("api", "ticket"): "/api/v1/tickets/5005/search",
            ("page", "archive"): f"{TICKET}archives/{archive_id}/search",
            ("page", "ticket"): f"{TICKET}search"}[route.split("-")[0], scope]
    res = client.get(base + "?" + urllib.parse.urlencode(query), status=status)
    if route.startswith("api"):
        return res, res.json.get("detail")
    error = res.html.find(id="search-error")
    return res, error and error.get_text()


def rss():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def bounded_memory():
    """Before the bounds, ``x{2147483647}`` grew a server to 23.5 GB: give this process
    2 GiB of address space more than it has, so that such a pattern fails this test with a
    MemoryError (a 500) instead of taking the machine's memory."""
    with open("/proc/self/status") as status:
        size = next(int(line.split()[1]) * 1024 for line in status
                    if line.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (size + 2 * 1024**3, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.fixture
def client_for(testapp, browser, staff):
    class Api:
        def get(self, path, status):
            return testapp.get(path, headers=staff.headers, status=status)

    return lambda route: Api() if route.startswith("api") else browser


@pytest.mark.parametrize("route", ROUTES)
def test_patterns_that_would_exhaust_memory_are_refused_with_the_reason(
        route, client_for, archive_id, bounded_memory):
    client = client_for(route)
    for pattern, reason in HOSTILE.items():
        before, started = rss(), time.monotonic()
        res, detail = search_on(route, client, archive_id, "*", q=pattern, regex="1")
        assert res.status_int == 400, (pattern, res.status_int, res.text[:300])
        assert reason in detail, (pattern, detail)
        assert detail.startswith("q: ")
        assert time.monotonic() - started < 2, pattern
        assert rss() - before < 64 * MiB, pattern
        if route.startswith("page"):
            # The form comes back with the pattern, as typed, to correct it.
            assert res.forms["search-form"]["q"].value == pattern
            assert res.forms["search-form"]["regex"].checked


@pytest.mark.parametrize("route", ROUTES)
def test_ordinary_patterns_up_to_the_bounds_still_search(route, client_for, archive_id, app):
    # (a+a+)+b backtracks until the deadline: a short one.
    app.registry.settings["inspect.search_timeout"] = 0.5
    client = client_for(route)
    for pattern in ORDINARY:
        res, detail = search_on(route, client, archive_id, 200, q=pattern, regex="1")
        assert detail is None, (pattern, detail)
    # A literal of the longest q, case-insensitive, is compiled too (escaped): still fine.
    search_on(route, client, archive_id, 200, q="NEEDLE " + "x" * 993, ignore_case="1")


def test_the_bounds_hold_at_their_edges():
    patterns.compile_pattern(b"x{%d}" % patterns.MAX_REPEAT)
    with pytest.raises(patterns.BadPattern, match="repeat count"):
        patterns.compile_pattern(b"x{%d}" % (patterns.MAX_REPEAT + 1))
    deepest = b"(" * patterns.MAX_NESTING + b"x" + b")" * patterns.MAX_NESTING
    patterns.compile_pattern(deepest)
    with pytest.raises(patterns.BadPattern, match="nest"):
        patterns.compile_pattern(b"(" + deepest + b")")
    # The largest accepted programs of several shapes compile in little memory and time.
    for largest in (b"(?:(x)|(y)){1000}", b"(?:[a-z](x)){1000}", b"(?:(?:(?:(x)){10}){10}){10}",
                    b"(?i)(?:(?:x|y)(z)){1000}", b"(?:(?:x{e<=3})(y)){1000}"):
        before, started = rss(), time.monotonic()
        patterns.compile_pattern(largest)
        assert time.monotonic() - started < 0.5 and rss() - before < 32 * MiB, largest


@pytest.mark.slow
@pytest.mark.parametrize("route", ["api-archive", "page-ticket"])
def test_matching_sees_bounded_windows_of_a_huge_line(route, client_for, upload, app,
                                                     bounded_memory):
    """A group inside a repeat backtracks with ~100 bytes of stack per byte of text: over
    one 6 MiB line that was the module's own MemoryError (a 500) after 600 MB."""
    app.registry.settings["inspect.search_timeout"] = 3
    archive_id = upload("long.log", b"a" * 6 * MiB + b"\n")
    peak, stop = [rss()], threading.Event()

    def sample():
        while not stop.wait(0.01):
            peak[0] = max(peak[0], rss())

    sampler = threading.Thread(target=sample)
    before = peak[0]
    sampler.start()
    try:
        res, detail = search_on(route, client_for(route), archive_id, "*",
                                q=r"(a|aa)*\d", regex="1")
    finally:
        stop.set()
        sampler.join()
    assert res.status_int == 200, (res.status_int, detail, res.text[:300])
    assert detail is None
    assert peak[0] - before < 300 * MiB
    if route.startswith("api"):
        assert res.json["reason"] == "time"
        assert res.json["bytes_scanned"] == 6 * MiB + 1


def test_a_match_is_found_in_any_window_of_a_long_line():
    line = b"a" * (3 * search.REGEX_WINDOW + 10) + b"NEEDLE" + b"a" * 100
    matcher = search.compile_matcher("NEE+DLE", is_regex=True)
    start = 3 * search.REGEX_WINDOW + 10
    assert matcher.find(line + b"\n", 0, 5) == (start, start + 6)
    many_lines = b"x\n" * search.REGEX_WINDOW + b"NEEDLE\n"
    assert matcher.find(many_lines, 0, 5) == (2 * search.REGEX_WINDOW,
                                              2 * search.REGEX_WINDOW + 6)
    assert matcher.find(many_lines, 2 * search.REGEX_WINDOW + 1, 5) is None


@contextlib.contextmanager
def every_slot_taken(app):
    limit = app.registry.settings["inspect.search_concurrency"]
    with contextlib.ExitStack() as stack:
        for _ in range(limit):
            stack.enter_context(services.search_slots.taken(limit))
        yield limit


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("limit", [1, 2, 5])
def test_one_search_more_than_the_slots_is_a_503_at_once(route, limit, client_for,
                                                        archive_id, app):
    app.registry.settings["inspect.search_concurrency"] = limit
    client = client_for(route)
    with every_slot_taken(app):
        for query in ({"q": "NEEDLE"}, {"q": "(a+a+)+b", "regex": "1"}):
            started = time.monotonic()
            res, detail = search_on(route, client, archive_id, 503, **query)
            assert time.monotonic() - started < 1
            assert res.headers["Retry-After"] == services.SEARCH_RETRY_AFTER
            assert f"{limit} searches are running" in detail
            assert "INSPECT_SEARCH_CONCURRENCY" in detail
        # A pattern that is refused anyway says so first.
        _, detail = search_on(route, client, archive_id, 400, q="x{2147483647}", regex="1")
        assert "repeat count" in detail
    # Freed: the same search runs.
    res, _ = search_on(route, client, archive_id, 200, q="NEEDLE")
    assert services.search_slots.running == 0
