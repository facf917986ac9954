"""collector/server.py's stop, in-process: a signal that came during startup, the body a
deadline cuts. The drain of a real server: tests/reliability/test_shutdown.py."""

import io
import logging
import threading
import time

from collector import server


class Tracked(io.BytesIO):
    def fileno(self):
        return 42


def test_a_cut_body_reads_as_ended_and_keeps_its_file():
    cancelled = threading.Event()
    body = server.CancellableInput(Tracked(b"line one\nline two\nrest"), cancelled)
    assert body.read(5) == b"line "
    assert body.readline() == b"one\n"
    assert body.fileno() == 42  # the spool reader still frees the spool behind it
    cancelled.set()
    assert (body.read(), body.readline(), list(body)) == (b"", b"", [])


def test_a_signal_during_startup_stops_the_server_once_it_runs(caplog):
    """Signals are installed before the app is built; one that came meanwhile is acted on
    by the loop at once: no request served, the usual lines, back to the caller."""
    signals = server.Signals()
    signals.received.append("SIGTERM")  # as its handler would, while the app was built
    served = []

    def app(environ, start_response):
        served.append(environ)
        start_response("200 OK", [])
        return [b""]

    options = {"listen": "127.0.0.1:0", "threads": 1, "connection_limit_per_address": 0,
               "idle_timeout": 15, "header_timeout": 10}
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="collector.server"):
        server.serve(app, options, ".", 0, grace=30, signals=signals)
    assert time.monotonic() - started < 2
    assert served == []
    messages = [r.getMessage() for r in caplog.records if r.name == "collector.server"]
    assert messages[0].startswith("SIGTERM received: stopping")
    assert messages[1] == "draining 0 connection(s) with a request in flight (0 idle closed)"
    assert messages[-1] == "exit"


def test_signals_are_recorded_and_wake_the_loop():
    signals = server.Signals()
    woken = []
    signals.wake = lambda: woken.append(True)
    signals._handle(15, None)
    signals._handle(2, None)
    assert signals.received == ["SIGTERM", "SIGINT"] and woken == [True, True]
