"""A help desk for the webhook tests: a real HTTP server on 127.0.0.1, and docs/operations.md's
recipe for verifying a signature, written as a receiver would write it."""

import hashlib
import hmac
import http.server
import threading

SECRET = "receiver-secret-0123456789"


class Receiver:
    """A help desk on 127.0.0.1: answers each POST with the next status of ``statuses``
    (the last one repeats) and keeps what it received."""

    def __init__(self, statuses=(200,)):
        self.statuses = list(statuses)
        self.received = []
        self.got_one = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 \
                    else receiver.statuses[0]
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
                receiver.got_one.set()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/logs?source=lc"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def verify_as_the_readme_says(headers, body, secret, now):
    """The receiver's side, exactly the recipe of docs/operations.md."""
    fields = dict(part.split("=", 1) for part in headers["X-Collector-Signature"].split(","))
    timestamp = int(fields["t"])
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body,
                        hashlib.sha256).hexdigest()
    return abs(now - timestamp) <= 300 and hmac.compare_digest(expected, fields["v1"])
