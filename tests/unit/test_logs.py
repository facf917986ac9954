"""Access log middleware, JSON lines, LOG_FORMAT/LOG_LEVEL over the ini's logging."""

import io
import json
import logging
import re
import threading
import urllib.request

import pytest
import waitress.server
import webtest

from collector import logs
from collector import settings as s


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hel", b"lo"]


def download(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", "4096")])
    return environ["wsgi.file_wrapper"](io.BytesIO(b"d" * 4096))


def broken(environ, start_response):
    raise RuntimeError("boom")


@pytest.fixture
def lines():
    """The messages (and records) the access logger emits."""
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Keep()
    logger = logging.getLogger("collector.access")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(previous)


DEFAULT = s.DEFAULT_ACCESS_LOG_FORMAT
LINE = re.compile(r'^(\S+) - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] "([^"]*)" (\d+) (\d+) '
                  r'(\d+\.\d{3})s "([^"]*)" "([^"]*)"$')


def test_default_line(lines):
    app = webtest.TestApp(logs.AccessLog(hello, DEFAULT))
    app.get("/x?y=1", headers={"User-Agent": 'curl/8 "quoted"', "Referer": "http://r/"},
            extra_environ={"REMOTE_ADDR": "192.0.2.7"})
    [record] = lines
    match = LINE.match(record.getMessage())
    assert match, record.getMessage()
    assert match.group(1) == "192.0.2.7"
    assert match.group(2) == "GET /x?y=1 HTTP/1.0"
    assert (match.group(3), match.group(4)) == ("200", "5")
    assert match.group(6) == "http://r/"
    assert match.group(7) == "curl/8 \\x22quoted\\x22"  # a quote cannot end the field
    assert record.access["status"] == 200 and record.access["bytes"] == 5


def test_custom_format_and_token_cut(lines):
    app = webtest.TestApp(logs.AccessLog(hello, "{method} {path} {status} {ms} {host}"))
    app.get("/api/v1/check/token/abcdefghijklmnop", extra_environ={"HTTP_HOST": "h.example"})
    assert lines[0].getMessage().startswith("GET /api/v1/check/token/abcd... 200 ")
    assert lines[0].getMessage().endswith(" h.example")


def test_the_apps_body_is_closed_then_logged(lines):
    closed = []

    def streaming(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body():
            try:
                yield b"abc"
                yield b"de"
            finally:
                closed.append(True)

        return body()

    webtest.TestApp(logs.AccessLog(streaming, DEFAULT)).get("/s")
    assert closed == [True]
    assert '"GET /s HTTP/1.0" 200 5 ' in lines[0].getMessage()


def test_an_exception_is_logged_as_500(lines):
    app = webtest.TestApp(logs.AccessLog(broken, DEFAULT))
    with pytest.raises(RuntimeError):
        app.get("/")
    assert ' 500 0 ' in lines[0].getMessage()


def test_nothing_is_wrapped_when_the_logger_is_off():
    logger = logging.getLogger("collector.access")
    previous = logger.level
    logger.setLevel(logging.WARNING)
    try:
        body = logs.AccessLog(hello, DEFAULT)({"REQUEST_METHOD": "GET"}, lambda *a: None)
    finally:
        logger.setLevel(previous)
    assert body == [b"hel", b"lo"]


def test_the_router_attributes_stay_reachable():
    class Router:
        registry = "the registry"

        def __call__(self, environ, start_response):  # pragma: no cover - not called
            return []

    assert logs.AccessLog(Router(), DEFAULT).registry == "the registry"


@pytest.mark.parametrize("fmt", ["{nope}", "{status:.3f} {", "{0}"])
def test_a_bad_format_names_the_variable(fmt):
    with pytest.raises(s.SettingsError, match="ACCESS_LOG_FORMAT"):
        s.load({"debug": "true"}, {"ACCESS_LOG_FORMAT": fmt})


def _serve(app, **options):
    server = waitress.server.create_server(app, host="127.0.0.1", port=0, threads=2,
                                           **options)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    return server, thread, f"http://127.0.0.1:{server.effective_port}"


def _stop(server, thread):
    server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)
    server.trigger.pull_trigger(lambda: [c.close() for c in list(server._map.values())])
    thread.join(timeout=5)


@pytest.mark.parametrize("trusted", [False, True])
def test_client_from_x_forwarded_for_only_behind_a_trusted_proxy(lines, trusted):
    options = {"trusted_proxy": "127.0.0.1", "trusted_proxy_headers": "x-forwarded-for"
               } if trusted else {}
    server, thread, url = _serve(logs.AccessLog(hello, DEFAULT), **options)
    try:
        request = urllib.request.Request(url + "/p", headers={"X-Forwarded-For": "203.0.113.9"})
        urllib.request.urlopen(request, timeout=5).read()
        urllib.request.urlopen(url + "/file", timeout=5).read()
    finally:
        _stop(server, thread)
    # waitress believes the header only from the trusted proxy (and drops it otherwise).
    # A line is written when its body has been handed over, by the thread that served it:
    # the two lines may come in either order.
    by_path = {("/p" if '"GET /p ' in m else "/file"): m for m in (r.getMessage() for r in lines)}
    assert by_path["/p"].startswith("203.0.113.9 - - " if trusted else "127.0.0.1 - - "), by_path
    assert by_path["/file"].startswith("127.0.0.1 - - "), by_path


def test_a_file_download_under_waitress_is_logged_with_its_length(lines):
    server, thread, url = _serve(logs.AccessLog(download, DEFAULT))
    try:
        assert len(urllib.request.urlopen(url + "/f", timeout=5).read()) == 4096
    finally:
        _stop(server, thread)
    assert '"GET /f HTTP/1.1" 200 4096 ' in lines[0].getMessage()


def test_json_lines():
    formatter = logs.JsonFormatter()
    try:
        raise ValueError("bad")
    except ValueError:
        import sys

        record = logging.LogRecord("collector.x", logging.ERROR, __file__, 1, "a %s", ("b",),
                                   sys.exc_info())
    record.access = {"status": 500}
    record.stack_info = "Stack (most recent call last):\n  here"
    entry = json.loads(formatter.format(record))
    assert entry["stack"].endswith("here")
    assert entry["message"] == "a b" and entry["level"] == "ERROR"
    assert entry["logger"] == "collector.x" and entry["access"] == {"status": 500}
    assert "ValueError: bad" in entry["exception"]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$", entry["time"])


def test_configure_json_and_level():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    ours = logging.StreamHandler(io.StringIO())
    root.handlers = [ours]
    try:
        logs.configure({"log.format": "json", "log.level": "WARNING"})
        assert isinstance(ours.formatter, logs.JsonFormatter)
        assert root.level == logging.WARNING
        root.handlers = []
        logs.configure({"log.format": "json", "log.level": ""})
        assert isinstance(root.handlers[0].formatter, logs.JsonFormatter)
        root.handlers = [ours]
        ours.setFormatter(None)
        logs.configure({"log.format": "text", "log.level": ""})
        assert ours.formatter is None
    finally:
        root.handlers, root.level = handlers, level
