"""Logging: the access log (a WSGI middleware) and JSON lines (``LOG_FORMAT=json``).

The access log sits outside Pyramid, around the whole app, so it sees every request —
404s, refusals by tweens, tracebacks — with the status and the body bytes the app handed
to the server. Its client address is ``REMOTE_ADDR``: waitress replaces that with the
``X-Forwarded-For`` client only when the peer is ``WAITRESS_TRUSTED_PROXY`` (and removes
the header from any other peer), so a client can never write its own address into the log.
"""

import datetime as dt
import json
import logging
import re
import sys
import threading
import time

access_logger = logging.getLogger("collector.access")

# field of ACCESS_LOG_FORMAT → what it holds (docs/operations.md, "Logs", lists them).
ACCESS_FIELDS = {
    "client": "client address (from X-Forwarded-For only when the proxy is trusted)",
    "time": "when the request arrived, `02/Dec/2026:10:00:00 +0000` (UTC)",
    "iso_time": "the same in ISO 8601",
    "request": "the request line, `GET /path?query HTTP/1.1`",
    "method": "the method", "path": "path and query", "protocol": "`HTTP/1.1`",
    "status": "status code", "bytes": "body bytes sent",
    "seconds": "seconds taken (a float: `{seconds:.3f}`)", "ms": "milliseconds taken (int)",
    "host": "the Host header", "referer": "the Referer header", "user_agent": "User-Agent",
}

# An upload token in a path (GET /api/v1/check/token/<token>) is cut to its first characters.
_TOKEN_IN_PATH = re.compile(r"(/api/v1/check/token/[^/?]{4})[^/?]*")
_UNPRINTABLE = re.compile(r'[\x00-\x1f\x7f-\xff"\\]')


def _printable(text):
    """Header values as one safe line: quotes, backslashes and control bytes escaped."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return text  # the usual case, five times faster than the substitution
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


_clock = threading.local()


def _times(wall):
    """The CLF and ISO times of a request, computed once per second and thread."""
    second = int(wall)
    cached = getattr(_clock, "cached", None)
    if cached is None or cached[0] != second:
        when = dt.datetime.fromtimestamp(second, dt.UTC)
        cached = _clock.cached = (second, when.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                                  when.isoformat()[:-6])
    return cached[1], f"{cached[2]}.{int(wall * 1000) % 1000:03d}+00:00"


def check_format(fmt):
    """Raise ValueError naming the problem if ``fmt`` cannot format an access line."""
    sample = dict.fromkeys(ACCESS_FIELDS, "-") | {"status": 200, "bytes": 0,
                                                  "seconds": 0.0, "ms": 0}
    try:
        fmt.format(**sample)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"bad access log format ({exc.__class__.__name__}: {exc}); "
                         f"fields: {', '.join(ACCESS_FIELDS)}") from None


class AccessLog:
    """WSGI middleware: one ``collector.access`` line per request, when it is done."""

    def __init__(self, app, fmt, logger=access_logger):
        check_format(fmt)
        self.app, self.format, self.logger = app, fmt, logger

    def __getattr__(self, name):
        # The wrapped Router's attributes (registry, …) stay reachable.
        return getattr(self.app, name)

    def __call__(self, environ, start_response):
        if not self.logger.isEnabledFor(logging.INFO):
            return self.app(environ, start_response)
        started, wall = time.perf_counter(), time.time()
        answer = {"status": "500", "length": None}

        def recording_start_response(status, headers, exc_info=None):
            answer["status"] = status.split(" ", 1)[0]
            answer["length"] = next((v for k, v in headers if k.lower() == "content-length"),
                                    None)
            return start_response(status, headers, exc_info)

        try:
            body = self.app(environ, recording_start_response)
        except BaseException:
            self._log(environ, answer["status"], 0, started, wall)
            raise
        wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(wrapper, type) and isinstance(body, wrapper):
            # A file download: waitress sends it from its own loop once we return, and only
            # its own class gets that path — so it is logged now, with its Content-Length.
            length = answer["length"]
            self._log(environ, answer["status"], int(length) if length else 0, started, wall)
            return body
        return _LoggedBody(body, lambda sent: self._log(environ, answer["status"], sent,
                                                          started, wall))

    def _log(self, environ, status, sent, started, wall):
        seconds = time.perf_counter() - started
        fields = fields_of(environ, status, sent, seconds, wall)
        self.logger.info(self.format.format(**fields), extra={"access": fields})


class _LoggedBody:
    """The app's body, counted as the server reads it; logged when the server closes it."""

    def __init__(self, body, done):
        self.body, self.done, self.sent = body, done, 0

    def __iter__(self):
        for chunk in self.body:
            self.sent += len(chunk)
            yield chunk

    def close(self):
        try:
            if hasattr(self.body, "close"):
                self.body.close()
        finally:
            self.done(self.sent)


def fields_of(environ, status, sent, seconds, wall):
    uri = environ.get("REQUEST_URI")
    if not uri:
        uri = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        if environ.get("QUERY_STRING"):
            uri += "?" + environ["QUERY_STRING"]
    path = _printable(_TOKEN_IN_PATH.sub(r"\1...", uri))
    method = _printable(environ.get("REQUEST_METHOD", "-"))
    protocol = _printable(environ.get("SERVER_PROTOCOL", "-"))
    clf_time, iso_time = _times(wall)
    return {
        "client": environ.get("REMOTE_ADDR") or "-",
        "time": clf_time, "iso_time": iso_time,
        "request": f"{method} {path} {protocol}", "method": method, "path": path,
        "protocol": protocol, "status": int(status) if status.isdigit() else status,
        "bytes": sent, "seconds": seconds, "ms": int(seconds * 1000),
        "host": _printable(environ.get("HTTP_HOST", "-")),
        "referer": _printable(environ.get("HTTP_REFERER", "-")),
        "user_agent": _printable(environ.get("HTTP_USER_AGENT", "-")),
    }


# Attributes every LogRecord has; anything else on a record came as ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, thread, message, extras, exception.

    Usable from an ini file too: ``[formatter_json]`` with
    ``class = collector.logs.JsonFormatter``.
    """

    def format(self, record):
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC)
            .isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "thread": record.threadName,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure(settings):
    """Apply LOG_LEVEL and LOG_FORMAT over the logging the ini file set up."""
    root = logging.getLogger()
    if settings["log.level"]:
        root.setLevel(settings["log.level"])
    if settings["log.format"] == "json":
        if not root.handlers:
            root.addHandler(logging.StreamHandler(sys.stderr))
        for handler in root.handlers:
            handler.setFormatter(JsonFormatter())
