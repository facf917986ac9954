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
"""

import errno
import logging
import time
from pathlib import Path

from waitress.adjustments import Adjustments
from waitress.server import MultiSocketServer, TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher

from collector import logs
from collector.archives.uploads import spool
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


def serve(app, options, spool_dir, reserve, announce=None):
    """Run the server until SIGTERM/SIGINT (``waitress.serve``, with the rules above);
    ``announce()`` once it listens (not before: the address may be refused)."""
    server = create(app, options, spool_dir, reserve)
    if announce is not None:
        announce()
    server.print_listen("Serving on http://{}:{}")
    server.run()


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
                  settings["storage.reserve"])
        except ListenError as exc:
            raise SystemExit(f"error: {exc}") from None

    return run
