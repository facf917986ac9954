"""Connection exhaustion against a real ``collector serve`` (collector/server.py).

waitress stops accepting once ``WAITRESS_CONNECTION_LIMIT`` connections are open, whoever
holds them. One client address with many idle connections, many addresses with idle
ones, and slowloris clients trickling their headers must not keep a health check from
another address (127.0.0.2: Linux routes all of 127/8 to the loopback) waiting:

* one address holds at most ``WAITRESS_CONNECTION_LIMIT_PER_ADDRESS`` connections; the
  next ones are answered 503 and closed (50 and 250 idle connections tried, the second
  more than the connection limit);
* idle connections (never used, or kept alive after an answer) are closed after
  ``WAITRESS_IDLE_TIMEOUT``, so many addresses cannot fill the limit for long either;
* a request head that is not complete ``WAITRESS_HEADER_TIMEOUT`` seconds after its
  first byte is cut, however steadily it trickles; a slow *body* is not (it keeps the
  long ``WAITRESS_CHANNEL_TIMEOUT``);
* the trusted proxy's address is exempt from the per-address limit.

SQLite only: nothing here touches the database beyond the health check.
"""

import socket
import statistics
import threading
import time

import pytest
from serverproc import Server

pytestmark = pytest.mark.slow

OTHER_CLIENT = "127.0.0.2"
# An address of its own for a test's idle connections: the server start's health checks
# come from 127.0.0.1, and one may still be counted when the test begins.
IDLE_CLIENT = "127.0.0.3"
HEALTH = "/api/v1/check/health/"


@pytest.fixture
def start_server(tmp_path):
    servers = []

    def start(**env):
        directory = tmp_path / f"server{len(servers)}"
        (directory / "db").mkdir(parents=True)
        server = Server(directory, f"sqlite:///{directory / 'db' / 'db.sqlite3'}")
        server.extra_env = {key: str(value) for key, value in env.items()}
        servers.append(server)
        return server.setup().start()

    yield start
    for server in servers:
        server.stop()


def connect(server, source="127.0.0.1", timeout=10):
    return socket.create_connection(("127.0.0.1", server.port), timeout=timeout,
                                    source_address=(source, 0))


def request_line(server, path=HEALTH, method="GET"):
    return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n").encode()


def read_answer(sock):
    """The first answer on ``sock`` (its head and a short body), or b"" if closed."""
    data = b""
    try:
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    return data


def health_latencies(server, count=10, timeout=5):
    """Seconds each of ``count`` health checks from OTHER_CLIENT took (a new connection
    each); ``timeout`` for one that gets no answer."""
    latencies = []
    for _ in range(count):
        started = time.monotonic()
        try:
            with connect(server, OTHER_CLIENT, timeout=timeout) as sock:
                sock.sendall(request_line(server))
                answer = read_answer(sock)
            assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
            latencies.append(time.monotonic() - started)
        except TimeoutError:
            latencies.append(timeout)
    return latencies


def closed(sock, wait=0.0):
    """Whether the server has closed ``sock`` (within ``wait`` seconds); what it sent."""
    sock.settimeout(wait or 0.001)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        return False, data
    except ConnectionResetError:
        pass
    return True, data


def open_idle(server, count, source="127.0.0.1"):
    sockets = []
    for _ in range(count):
        sockets.append(connect(server, source))
    return sockets


def wait_until(predicate, timeout):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.parametrize("idle", [50, 250])
def test_one_address_holds_at_most_its_share(start_server, idle):
    """Idle connections from one address past the per-address limit (and, with 250, past
    the connection limit) are refused; the health check from another address is answered
    at once meanwhile."""
    per_address = 32
    server = start_server(WAITRESS_CONNECTION_LIMIT=200,
                          WAITRESS_CONNECTION_LIMIT_PER_ADDRESS=per_address,
                          WAITRESS_IDLE_TIMEOUT=120, WAITRESS_CHANNEL_TIMEOUT=120)
    sockets = open_idle(server, idle, IDLE_CLIENT)
    try:
        latencies = health_latencies(server)
        assert statistics.median(latencies) < 1 and max(latencies) < 2, latencies
        # Each refused connection was told why before it was closed.
        time.sleep(1)
        outcomes = [closed(sock) for sock in sockets]
        refused = [data for is_closed, data in outcomes if is_closed]
        assert len(refused) == idle - per_address
        assert all(data in (b"",) or data.startswith(b"HTTP/1.1 503 ") and
                   b"too many connections from this address" in data for data in refused)
        assert sum(1 for data in refused if data.startswith(b"HTTP/1.1 503 ")) > 0
        # The ones kept are served.
        kept = [sock for sock, (is_closed, _) in zip(sockets, outcomes) if not is_closed]
        kept[0].settimeout(10)
        kept[0].sendall(request_line(server))
        assert read_answer(kept[0]).startswith(b"HTTP/1.1 200 ")
    finally:
        for sock in sockets:
            sock.close()
    # Once they are gone (when the server has read their ends), it is served again.

    def served():
        with connect(server, IDLE_CLIENT) as sock:
            sock.sendall(request_line(server))
            return read_answer(sock).startswith(b"HTTP/1.1 200 ")

    assert wait_until(served, 5)
    assert "Traceback" not in server.log(), server.log()[-3000:]


def test_idle_connections_go_first_when_the_limit_is_reached(start_server):
    """Ten addresses, each within its share, together fill the connection limit with idle
    connections: they are closed after a second of silence (not the idle timeout, not the
    120 s channel timeout), and the other client is answered."""
    server = start_server(WAITRESS_CONNECTION_LIMIT=100,
                          WAITRESS_CONNECTION_LIMIT_PER_ADDRESS=16,
                          WAITRESS_IDLE_TIMEOUT=60, WAITRESS_CHANNEL_TIMEOUT=120)
    sockets = []
    try:
        for n in range(3, 13):
            sockets += open_idle(server, 12, source=f"127.0.0.{n}")
        # 120 connections and waitress's own sockets: more than 100.
        latencies = health_latencies(server, count=5)
        assert max(latencies) < 4, latencies
        # Those that filled the limit went; those accepted after it (from the kernel's
        # queue) found room and keep the idle timeout.
        assert sum(closed(sock)[0] for sock in sockets) >= 80
    finally:
        for sock in sockets:
            sock.close()


def test_trickled_heads_go_first_when_the_limit_is_reached(start_server):
    """Slowloris from ten addresses, each within its share, filling the connection limit:
    while it is reached a head may take 2 s, not the 60 s of the header timeout set here,
    and the other client is answered."""
    server = start_server(WAITRESS_CONNECTION_LIMIT=60,
                          WAITRESS_CONNECTION_LIMIT_PER_ADDRESS=16,
                          WAITRESS_HEADER_TIMEOUT=60, WAITRESS_IDLE_TIMEOUT=60)
    sockets = []
    for n in range(3, 13):
        sockets += open_idle(server, 8, source=f"127.0.0.{n}")
    stop = threading.Event()

    def trickle():
        while not stop.wait(0.3):
            for sock in sockets:
                try:
                    sock.send(b"X")
                except OSError:
                    pass

    for sock in sockets:
        sock.send(b"GET / HTTP/1.1\r\nX-Slow: ")
    thread = threading.Thread(target=trickle)
    thread.start()
    try:
        latencies = health_latencies(server, count=5)
        assert max(latencies) < 5, latencies
    finally:
        stop.set()
        thread.join(10)
        for sock in sockets:
            sock.close()


def test_idle_connections_are_closed_after_the_idle_timeout(start_server):
    """Below the limit, a connection that never sent a byte and one kept alive after its
    answer live ``WAITRESS_IDLE_TIMEOUT`` seconds, not the channel timeout."""
    idle_timeout = 2
    server = start_server(WAITRESS_IDLE_TIMEOUT=idle_timeout, WAITRESS_CHANNEL_TIMEOUT=120)
    never_used = open_idle(server, 5, source="127.0.0.3")
    used = connect(server, "127.0.0.4")
    sockets = [*never_used, used]
    try:
        used.sendall(request_line(server))
        assert read_answer(used).startswith(b"HTTP/1.1 200 ")
        started = time.monotonic()
        assert wait_until(lambda: all(closed(sock)[0] for sock in sockets),
                          idle_timeout + 5)
        assert time.monotonic() - started > idle_timeout - 1
    finally:
        for sock in sockets:
            sock.close()


def test_slow_headers_are_cut_and_slow_bodies_are_not(start_server):
    """Slowloris: heads trickled a byte every 0.2 s are cut after the header timeout,
    although never silent; a head that completes in time is answered; a body trickled for
    longer than both short timeouts still gets its answer."""
    header_timeout = 2
    server = start_server(WAITRESS_HEADER_TIMEOUT=header_timeout, WAITRESS_IDLE_TIMEOUT=2,
                          WAITRESS_CHANNEL_TIMEOUT=120,
                          WAITRESS_CONNECTION_LIMIT_PER_ADDRESS=32)
    head = (f"GET {HEALTH} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            + "".join(f"X-Pad-{i}: {'a' * 20}\r\n" for i in range(50)) + "\r\n").encode()
    tricklers = [connect(server) for _ in range(20)]
    body = b'{"token": "x"}'
    slow_body = connect(server)
    slow_body.sendall((f"POST /api/v1/auth/verify/ HTTP/1.1\r\nHost: 127.0.0.1:{server.port}"
                       f"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
                       "\r\n\r\n").encode())
    cut = {}
    stop = threading.Event()
    started = time.monotonic()

    def trickle():
        for i in range(len(head)):
            for n, sock in enumerate(tricklers):
                if n in cut:
                    continue
                try:
                    sock.sendall(head[i:i + 1])
                except OSError:
                    cut[n] = time.monotonic() - started
            if stop.wait(0.2) or len(cut) == len(tricklers):
                return

    def trickle_body():
        for i in range(len(body)):
            time.sleep(0.4)  # 14 bytes: ~5.6 s, past both short timeouts
            slow_body.sendall(body[i:i + 1])

    threads = [threading.Thread(target=trickle), threading.Thread(target=trickle_body)]
    for thread in threads:
        thread.start()
    try:
        # Meanwhile another address is answered, and so is a head sent in time.
        assert max(health_latencies(server, count=5)) < 1
        with connect(server) as sock:
            for i in range(0, len(request_line(server)), 8):
                sock.sendall(request_line(server)[i:i + 8])
                time.sleep(0.05)
            assert read_answer(sock).startswith(b"HTTP/1.1 200 ")
        # Every trickler is closed without an answer, a little after the header timeout.
        slow_body.settimeout(30)
        answer = read_answer(slow_body)
        assert answer.startswith(b"HTTP/1.1 "), answer[:300]
        assert b" 503 " not in answer.split(b"\r\n", 1)[0]
        for sock in tricklers:
            is_closed, data = closed(sock, wait=header_timeout + 5)
            assert is_closed and data == b""
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        for sock in [*tricklers, slow_body]:
            sock.close()
    assert time.monotonic() - started > header_timeout
    assert "Traceback" not in server.log(), server.log()[-3000:]


def test_the_trusted_proxy_is_not_limited_per_address(start_server):
    """Every client behind the proxy shares its address: the proxy's connections are not
    counted against the per-address limit; any other address's are."""
    server = start_server(WAITRESS_TRUSTED_PROXY="127.0.0.1",
                          WAITRESS_CONNECTION_LIMIT_PER_ADDRESS=4, WAITRESS_IDLE_TIMEOUT=60)
    proxy = [connect(server) for _ in range(12)]
    other = [connect(server, OTHER_CLIENT) for _ in range(12)]
    try:
        for sock in proxy:
            sock.sendall(request_line(server))
        assert all(read_answer(sock).startswith(b"HTTP/1.1 200 ") for sock in proxy)
        time.sleep(1)
        refused = [sock for sock in other if closed(sock)[0]]
        assert len(refused) == 12 - 4
    finally:
        for sock in proxy + other:
            sock.close()
