"""``collector serve``'s waitress server: connections bounded per client address, and idle
or slow-headed connections closed long before the channel timeout that slow bodies need.

waitress stops accepting once ``connection_limit`` connections are open, whoever holds
them: one client with 210 idle connections made every other client wait (health p50
27 s). So, on top of waitress's own rules:

* **per address**: a peer address that already holds ``connection_limit_per_address``
  connections has its next one answered 503 and closed at accept time. The address is
  the TCP peer as waitress sees it; the trusted proxy's address (``trusted_proxy``) is
  exempt — every client behind it shares it, so the proxy must bound its own clients
  (nginx ``limit_conn``, see docs/nginx.conf); with ``trusted_proxy = *`` every peer is a
  proxy and no peer is limited.
* **idle**: a connection with no request in progress and nothing left to send is closed
  after ``idle_timeout`` seconds of silence (a keep-alive connection, or one that never
  sent a byte) — after one second while ``connection_limit`` is reached, so that idle
  connections of many addresses cannot keep the others out either.
* **headers**: a request head must be complete within ``header_timeout`` seconds of its
  first byte, however steadily it trickles (slowloris); the connection is closed. Two
  seconds while ``connection_limit`` is reached.

A request body, an answer being sent and a request the app is working on keep waitress's
``channel_timeout`` (seconds of silence), which slow links uploading large bodies need.

**Stopping** (SIGTERM or SIGINT, ``Drain``): the listening sockets close at once (new
connections are refused), idle keep-alive connections are closed, and the requests in
flight — a body still arriving, the app working, an answer being sent — get up to
``SHUTDOWN_GRACE`` seconds to end; ``/readyz`` answers 503 meanwhile. At the deadline, or
at a second signal, what is left is cut as a client that went away would cut it: the
bodies the app is still reading end early (its transaction aborts, staging is removed),
the connections close, and the worker threads get ``ABORT_WAIT`` seconds to roll back.
The webhook worker ends after the delivery it is making. Then the process exits 0.
"""

import errno
import logging
import signal
import threading
import time
from pathlib import Path

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, MultiSocketServer, TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher

from collector import logs
from collector.archives.uploads import receiving, spool
from collector.probes import DRAINING
from collector.settings import waitress_options

log = logging.getLogger(__name__)

# Options of this module, not waitress's (``Adjustments`` refuses names it does not know).
GUARD_OPTIONS = ("connection_limit_per_address", "idle_timeout", "header_timeout")
# How often connections are checked against the timeouts (waitress's loop wakes up at
# least once a second).
CHECK_INTERVAL = 1
# While the connection limit is reached: seconds of silence after which an idle connection
# goes, and seconds a request head may take (a real client's head takes milliseconds).
CROWDED_IDLE_TIMEOUT = 1
CROWDED_HEADER_TIMEOUT = 2

REFUSAL_BODY = b'{"detail": "too many connections from this address"}'
REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\n"
           b"Content-Type: application/json\r\n"
           b"Content-Length: " + str(len(REFUSAL_BODY)).encode() + b"\r\n"
           b"Retry-After: 10\r\n"
           b"Connection: close\r\n\r\n" + REFUSAL_BODY)


class HeadTimingMixin:
    """Remembers when the request head being received began (its first byte)."""

    head_request = None  # the parser of the head being received
    head_started = 0.0

    def received(self, data):
        result = super().received(data)
        request = self.request
        if request is not None and not request.headers_finished \
                and request is not self.head_request:
            self.head_request, self.head_started = request, time.time()
        return result

    def receiving_head(self):
        request = self.request
        return (request is not None and request is self.head_request
                and not request.headers_finished)


class GuardedServer(TcpWSGIServer):
    """waitress's TCP server with the per-address limit and the two short timeouts."""

    def __init__(self, *args, connection_limit_per_address, idle_timeout, header_timeout,
                 **kwargs):
        self.per_address = connection_limit_per_address
        self.idle_timeout = idle_timeout
        self.header_timeout = header_timeout
        self.at_limit = set()  # addresses refused (logged once while they hold connections)
        super().__init__(*args, **kwargs)

    def exempt(self, host):
        proxy = self.adj.trusted_proxy
        return not self.per_address or proxy == "*" or host == proxy

    def handle_accept(self):
        try:
            pair = self.accept()
            if pair is None:
                return
            conn, addr = pair
            self.set_socket_options(conn)
        except OSError:  # the peer went away before we looked at it (as waitress does)
            return
        addr = self.fix_addr(addr)
        host = addr[0]
        if not self.exempt(host):
            held = sum(1 for channel in list(self.active_channels.values())
                       if channel.addr[0] == host)
            if held >= self.per_address:
                self.refuse(conn, host)
                return
            self.at_limit.discard(host)
        self.channel_class(self, conn, addr, self.adj, map=self._map)

    def refuse(self, conn, host):
        if host not in self.at_limit:
            self.at_limit.add(host)
            log.warning("%s holds %d connections (WAITRESS_CONNECTION_LIMIT_PER_ADDRESS): "
                        "refusing more until some close", host, self.per_address)
        try:
            conn.setblocking(False)
            conn.send(REFUSAL)  # a few hundred bytes: the socket's buffer takes them
        except OSError:
            pass
        finally:
            conn.close()

    def maintenance(self, now):
        """Every ``cleanup_interval``: waitress's channel timeout, then the two short ones.
        While the connection limit is reached they are shorter still (``CROWDED_*``), so
        that clients waiting to connect get their turn: idle and trickling connections of
        many addresses go first."""
        super().maintenance(now)
        crowded = len(self._map) >= self.adj.connection_limit
        idle_cutoff = now - (CROWDED_IDLE_TIMEOUT if crowded else self.idle_timeout)
        head_cutoff = now - (min(CROWDED_HEADER_TIMEOUT, self.header_timeout) if crowded
                             else self.header_timeout)
        channels = list(self.active_channels.values())
        # Forget the addresses that hold nothing any more: the set stays bounded.
        self.at_limit &= {channel.addr[0] for channel in channels}
        for channel in channels:
            if channel.requests or channel.will_close:
                continue  # the app is answering (or it is closing anyway)
            if channel.receiving_head():
                if channel.head_started < head_cutoff:
                    channel.will_close = True
            elif (channel.request is None and not channel.total_outbufs_len
                  and channel.last_activity < idle_cutoff):
                channel.will_close = True


class ListenError(Exception):
    """The server cannot listen where ``waitress.listen`` says: one line for the operator."""


# What each refusal of bind() means for whoever runs the server.
BIND_HINTS = {
    errno.EADDRINUSE: "another process listens there",
    errno.EACCES: "ports below 1024 need root or CAP_NET_BIND_SERVICE",
    errno.EADDRNOTAVAIL: "no such address on this machine",
}


def _listen_error(listen, reason):
    return ListenError(f"WAITRESS_LISTEN: cannot listen on {listen}: {reason}")


def split_options(options):
    """(waitress's options, this module's)."""
    waitress_options = {k: v for k, v in options.items() if k not in GUARD_OPTIONS}
    return waitress_options, {k: options[k] for k in GUARD_OPTIONS}


def create(app, options, spool_dir, reserve):
    """A server for ``options`` (``settings.waitress_options``), not yet running: what
    ``waitress.create_server`` builds for ``listen`` addresses, with ``GuardedServer`` and
    the channel that refuses bodies the disk could not spool (``spool``)."""
    waitress_options, guard = split_options(options)
    # waitress looks for timed-out connections every 30 s by default: far too seldom for
    # timeouts of a few seconds.
    try:
        adj = Adjustments(**{"cleanup_interval": CHECK_INTERVAL, **waitress_options})
    except ValueError as exc:
        # waitress's words when getaddrinfo() cannot resolve a listen address.
        if "host/port" not in str(exc):
            raise
        raise _listen_error(options["listen"], "unknown host name or address") from None
    channel = type("GuardedChannel", (HeadTimingMixin,
                                      spool.space_checking_channel(spool_dir, reserve)), {})
    dispatcher = ThreadedTaskDispatcher()
    socket_map = {}
    servers = []
    for sockinfo in adj.listen:
        try:
            server = GuardedServer(app, socket_map, dispatcher=dispatcher, adj=adj,
                                   sockinfo=sockinfo, **guard)
        except OSError as exc:
            # What was opened so far (the sockets, waitress's wake-up pipe) is in the map.
            for opened in list(socket_map.values()):
                opened.close()
            if exc.errno not in BIND_HINTS:
                raise
            reason = f"{exc.strerror} ({BIND_HINTS[exc.errno]})"
            raise _listen_error(options["listen"], reason) from None
        server.channel_class = channel
        servers.append(server)
    # Worker threads only once every address is bound (none left behind by a refusal).
    dispatcher.set_thread_count(adj.threads)
    if len(servers) == 1:
        return servers[0]
    return MultiSocketServer(socket_map, adj, [(s.effective_host, s.effective_port)
                                               for s in servers],
                             dispatcher, servers[0].log_info)


# --- stopping ------------------------------------------------------------------------------

# Seconds the worker threads get, after the deadline, to roll back what was cut.
ABORT_WAIT = 1.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Seconds between looks at the drain: nothing wakes the loop when a worker thread goes
# idle, and waitress's loop sleeps up to a second (an answered request took 1 s to exit).
DRAIN_POLL = 0.05


class Signals:
    """SIGTERM and SIGINT, recorded instead of ending the process. Installed before the
    app is built, so that a signal during startup is kept and the server stops as soon as
    its loop runs (having served nothing) instead of dying half set up."""

    def __init__(self):
        self.received = []
        self.wake = None  # a function that interrupts the server's poll

    def install(self):
        for number in STOP_SIGNALS:
            signal.signal(number, self._handle)
        return self

    def _handle(self, number, _frame):
        self.received.append(signal.Signals(number).name)
        if self.wake is not None:
            # The trigger's pipe, written without its lock: safe in a signal handler.
            self.wake()


class CancellableInput:
    """A request body (``wsgi.input``) that reads as ended once ``cancelled`` is set: the
    app then fails the request as it does when a client goes away mid-body."""

    def __init__(self, stream, cancelled):
        self._stream, self._cancelled = stream, cancelled

    def read(self, *args):
        return b"" if self._cancelled.is_set() else self._stream.read(*args)

    def readline(self, *args):
        return b"" if self._cancelled.is_set() else self._stream.readline(*args)

    def __iter__(self):
        return iter(self.readline, b"")

    def __getattr__(self, name):
        # fileno() among them: the spool reader frees the spool file behind it.
        return getattr(self._stream, name)


class DrainAware:
    """The app, given the draining flag and bodies that the deadline can cut."""

    def __init__(self, app):
        self.app = app
        self.draining = threading.Event()
        self.cancelled = threading.Event()

    def __getattr__(self, name):
        return getattr(self.app, name)  # the Router's registry

    def __call__(self, environ, start_response):
        environ[DRAINING] = self.draining
        environ["wsgi.input"] = CancellableInput(environ["wsgi.input"], self.cancelled)
        # A body taken from its spool is not read through wsgi.input: the app asks this.
        environ[receiving.CUT_KEY] = self.cancelled
        return self.app(environ, start_response)


def busy(channel):
    """A connection with a request in flight: its head or body arriving, the app working
    on it, or its answer still being sent."""
    return bool(channel.requests) or channel.request is not None \
        or channel.total_outbufs_len > 0


class Drain:
    """The server's loop (waitress's ``asyncore.loop``), and the stop on a signal."""

    def __init__(self, socket_map, dispatcher, adj, app, signals, grace, worker=None):
        self.map, self.dispatcher, self.adj = socket_map, dispatcher, adj
        self.app, self.signals, self.grace, self.worker = app, signals, grace, worker
        self.deadline = None
        self.handled = 0  # signals acted on
        self.cut = False  # the deadline has come: what was in flight is cut

    def listeners(self):
        return [obj for obj in list(self.map.values()) if isinstance(obj, BaseWSGIServer)]

    def channels(self):
        return [obj for obj in list(self.map.values()) if isinstance(obj, HTTPChannel)]

    def threads_busy(self):
        with self.dispatcher.lock:
            return self.dispatcher.active_count + len(self.dispatcher.queue)

    def run(self):
        poll = wasyncore.poll2 if self.adj.asyncore_use_poll else wasyncore.poll
        listeners = self.listeners()
        self.signals.wake = listeners[0].pull_trigger
        try:
            while True:
                if len(self.signals.received) > self.handled:
                    if not self.handled:
                        self.begin()
                    else:
                        log.info("%s during the drain: stopping now", self.signals.received[-1])
                        self.deadline = time.monotonic()
                    self.handled = len(self.signals.received)
                if self.deadline is not None and self.step():
                    break
                poll(self.adj.asyncore_loop_timeout if self.deadline is None else DRAIN_POLL,
                     self.map)
        finally:
            self.signals.wake = None
        self.finish(listeners)

    def begin(self):
        """The first signal: no new connection, idle ones closed, the worker told."""
        log.info("%s received: stopping (no new connections; requests in flight get up to "
                 "%g s, SHUTDOWN_GRACE)", self.signals.received[0], self.grace)
        self.deadline = time.monotonic() + self.grace
        self.app.draining.set()
        for listener in self.listeners():
            # Only the listening socket: the trigger stays, the worker threads pull it.
            wasyncore.dispatcher.close(listener)
        if self.worker is not None:
            self.worker.stop(timeout=0)
        channels = self.channels()
        log.info("draining %d connection(s) with a request in flight (%d idle closed)",
                 sum(1 for c in channels if busy(c)),
                 sum(1 for c in channels if not busy(c)))

    def step(self):
        """Close what is idle; True once nothing is in flight or the deadline is past."""
        if self.cut:
            return True
        channels = self.channels()
        in_flight = 0
        for channel in channels:
            if busy(channel):
                in_flight += 1
            elif not channel.will_close:
                channel.will_close = True  # closed by the loop (waitress's handle_write)
        if not in_flight and not self.threads_busy():
            return True
        if time.monotonic() < self.deadline:
            return False
        log.warning("deadline reached: cutting %d request(s) in flight (their uploads are "
                    "not stored; a resumable upload resumes from its last saved offset)",
                    in_flight or self.threads_busy())
        self.cut = True
        self.app.cancelled.set()
        for channel in self.channels():
            channel.handle_close()
        return True

    def finish(self, listeners):
        # Running tasks end (those cut roll back); queued ones are cancelled. With
        # SHUTDOWN_GRACE=0 (stop at once) nothing is waited for: a kill's outcome.
        # (Idle threads take a moment to see the stop: 0.1 s at least.)
        abort_wait = max(min(ABORT_WAIT, self.grace), 0.1)
        self.dispatcher.shutdown(cancel_pending=True, timeout=abort_wait)
        stuck = len(self.dispatcher.threads)
        if self.worker is not None:
            left = max(self.deadline - time.monotonic(), abort_wait)
            if self.worker.stop(timeout=left):
                log.info("webhook worker stopped")
            else:
                log.warning("webhook worker still delivering: its claim expires, and the "
                            "delivery is retried")
        for channel in self.channels():
            channel.handle_close()
        for listener in listeners:
            listener.trigger.close()
        wasyncore.close_all(self.map)
        if stuck:
            log.warning("%d worker thread(s) still busy: their requests are not committed",
                        stuck)
        log.info("exit")


def serve(app, options, spool_dir, reserve, grace=30.0, signals=None, announce=None):
    """Run the server until SIGTERM/SIGINT, then drain it (``Drain``); the rules above.
    ``announce()`` once it listens (not before: the address may be refused)."""
    signals = signals or Signals().install()
    app = DrainAware(app)
    server = create(app, options, spool_dir, reserve)
    if announce is not None:
        announce()
    server.print_listen("Serving on http://{}:{}")
    registry = getattr(app, "registry", None)
    worker = registry.get("worker") if registry is not None else None
    Drain(server.map if isinstance(server, MultiSocketServer) else server._map,
          server.task_dispatcher, server.adj, app, signals, grace, worker).run()


def paste_server(global_conf, **local_conf):
    """``pserve``'s server factory (``[server:main] use = call:collector.server:paste_server``):
    the server ``collector serve`` runs, with the same options — the ``waitress.*`` settings
    of ``[app:main]`` and the ``WAITRESS_*`` variables over them, as the app read them — so
    the per-address limit, the short timeouts and the early 507 hold under ``pserve`` too.
    Options in ``[server:main]`` itself would be a second place for the same settings:
    refused."""
    if local_conf:
        raise SystemExit(f"error: [server:main] {', '.join(sorted(local_conf))}: this server "
                         "takes no options here; set them in [app:main] as waitress.* (or "
                         "the WAITRESS_* variables)")

    def run(wsgi_app):
        settings = getattr(getattr(wsgi_app, "registry", None), "settings", None)
        if settings is None or "waitress.listen" not in settings:
            raise SystemExit("error: [server:main]: collector.server runs the Logs Collector "
                             "app only (egg:logs-collector in [app:main])")
        # LOG_FORMAT / LOG_LEVEL over the ini's logging, which pserve has set up.
        logs.configure(settings)
        try:
            serve(wsgi_app, waitress_options(settings), Path(settings["data_dir"]) / "tmp",
                  settings["storage.reserve"], grace=settings["shutdown.grace"])
        except ListenError as exc:
            raise SystemExit(f"error: {exc}") from None

    return run
