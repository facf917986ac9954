"""Settings: the ini holds structure and safe defaults, environment variables override.

Every override goes through ``ENV_OVERRIDES``, one explicit table of (setting, variable,
coercer, meaning). The table of variables in docs/configuration.md is checked against it by a test.
"""

import difflib
import ipaddress
import math
import os
import re
import zoneinfo
from pathlib import Path

from collector.logs import check_format

DEFAULT_SECRET_KEYS = {"", "change-me", "dev-insecure-secret-key-change-me"}
# The client (from X-Forwarded-For when the proxy is trusted), the request line, status,
# body bytes sent, seconds taken; the fields are those of collector.logs.ACCESS_FIELDS.
DEFAULT_ACCESS_LOG_FORMAT = ('{client} - - [{time}] "{request}" {status} {bytes} '
                             '{seconds:.3f}s "{referer}" "{user_agent}"')


class SettingsError(ValueError):
    """A setting is missing or unsafe; the message names the variable."""


def as_bool(value):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def as_list(value):
    if isinstance(value, (list, tuple)):
        return list(value)
    return [item for item in re.split(r"[\s,]+", str(value)) if item]


_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)


def as_size(value):
    """Bytes from ``4294967296``, ``4GiB``, ``512M`` (binary multiples)."""
    if isinstance(value, int):
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(f"not a size: {value!r}")
    number, unit = int(match.group(1)), match.group(2).lower()
    return number * 1024 ** " kmgt".index(unit or " ")


# The engines (and drivers) the code is written and tested for.
DB_URL_SCHEMES = ("sqlite", "sqlite+pysqlite", "postgresql+psycopg")


def as_db_url(value):
    """Accept the original project's ``psql://`` alias and plain ``postgresql://``; refuse
    other engines (``mysql://`` …) here rather than with a driver's traceback later."""
    url = str(value).strip()
    for prefix in ("psql://", "postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    scheme, separator, _ = url.partition("://")
    if url and (not separator or scheme not in DB_URL_SCHEMES):
        # Only the scheme is shown: the rest of a URL may hold a password.
        raise ValueError(f"`sqlite:///path`, `postgresql://…` or `psql://…` expected, not "
                         f"{scheme + '://…' if separator else 'a URL without a scheme'}")
    return url


_LISTEN = re.compile(r"(\*|\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):([0-9]{1,5})")


def as_listen(value):
    """``host:port`` pairs, space separated (``*:6543``, ``[::1]:6543``); port 0–65535."""
    text = str(value).strip()
    pairs = text.split()
    for pair in pairs:
        match = _LISTEN.fullmatch(pair)
        if not match or int(match.group(2)) > 65535:
            raise ValueError(f"not host:port (a port 0–65535; several space separated): "
                             f"{pair!r}")
    if not pairs:
        raise ValueError("empty: host:port expected")
    return text


def as_secure(value):
    """``auto`` (Secure cookie when the request came over https), or a boolean."""
    text = str(value).strip().lower()
    return "auto" if text == "auto" else as_bool(text)


def as_percent(value):
    number = float(value)
    if not 0 <= number <= 100:
        raise ValueError(f"not a percentage: {value!r}")
    return number


class Share(float):
    """A share of a whole, in per cent: ``STORAGE_ALERT_FREE=10%``."""

    def __repr__(self):
        return f"{float(self):g}%"


def as_free_space(value):
    """Bytes, as ``as_size`` reads them (``2GiB``), or a share of the total (``10%``)."""
    if isinstance(value, (int, Share)):
        return value
    text = str(value).strip()
    if text.endswith("%"):
        return Share(as_percent(text[:-1]))
    return as_size(text)


def as_tz(value):
    zoneinfo.ZoneInfo(str(value))
    return str(value)


def as_networks(value):
    """``10.0.0.0/8, 192.168.1.7, ::1`` → networks (a bare address is a /32 or /128)."""
    return [ipaddress.ip_network(item, strict=False) for item in as_list(value)]


def as_storage_url(value):
    """Empty (archives on the local disk, the default) or ``s3://bucket[/prefix]``."""
    url = str(value).strip()
    if not url:
        return ""
    match = re.fullmatch(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(/[^?#]*)?", url)
    if not match:
        raise ValueError(f"not empty or s3://bucket[/prefix]: {value!r}")
    return url


def as_download_mode(value):
    text = str(value).strip().lower()
    if text not in {"stream", "redirect"}:
        raise ValueError(f"not `stream` or `redirect`: {value!r}")
    return text


# SigV4, which presigned URLs use, refuses a lifetime above seven days.
MAX_PRESIGN_SECONDS = 7 * 24 * 3600


def as_expiry(value):
    number = int(value)
    if not 1 <= number <= MAX_PRESIGN_SECONDS:
        raise ValueError(f"not between 1 and {MAX_PRESIGN_SECONDS} seconds: {value!r}")
    return number


def as_log_format(value):
    text = str(value).strip().lower()
    if text not in {"text", "json"}:
        raise ValueError(f"not `text` or `json`: {value!r}")
    return text


def as_access_log_format(value):
    check_format(str(value))
    return str(value)


def as_log_level(value):
    text = str(value).strip().upper()
    if text and text not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ValueError(f"not a log level: {value!r}")
    return text


# (setting, environment variable, coercer, meaning) — docs/configuration.md documents each row.
ENV_OVERRIDES = [
    ("secret_key", "SECRET_KEY", str, "signs sessions; production refuses the default"),
    ("debug", "DEBUG", as_bool, "development mode; false means production rules"),
    ("allowed_hosts", "ALLOWED_HOSTS", as_list,
     "Host header values served (`*` = any; production refuses it and an empty list)"),
    ("csrf_trusted_origins", "CSRF_TRUSTED_ORIGINS", as_list, "origins allowed to post forms"),
    ("db_url", "DB_URL", as_db_url, "`sqlite:///path`, `postgresql://…` or `psql://…`"),
    ("tz", "TZ", as_tz, "time zone used when showing times"),
    ("data_dir", "DATA_DIR", str, "database, archives, partial uploads, staging"),
    ("upload.max_size", "UPLOAD_MAX_SIZE", as_size, "largest archive accepted (413 above)"),
    ("storage.reserve", "STORAGE_RESERVE", as_size, "free space always kept (507 below)"),
    ("storage.url", "STORAGE_URL", as_storage_url,
     "where archives are kept: empty for `DATA_DIR/archives`, or `s3://bucket/prefix`"),
    ("storage.endpoint_url", "STORAGE_ENDPOINT_URL", str,
     "S3 endpoint (MinIO, Ceph RGW …); empty: AWS (or `AWS_ENDPOINT_URL`)"),
    ("storage.region", "STORAGE_REGION", str,
     "S3 region; empty: `AWS_REGION`/`AWS_DEFAULT_REGION` or the AWS config"),
    ("storage.quota", "STORAGE_QUOTA", as_size,
     "S3: bytes the archives may take (free space = quota − stored); required with S3"),
    ("storage.download", "STORAGE_DOWNLOAD", as_download_mode,
     "`stream` (archives go through the app) or `redirect` (S3 only: 302 to a presigned URL)"),
    ("storage.download_expiry", "STORAGE_DOWNLOAD_EXPIRY", as_expiry,
     "seconds a presigned download URL stays valid (`redirect`)"),
    ("upload.tus_expiry_days", "TUS_EXPIRY_DAYS", int,
     "days an unfinished resumable upload is kept after its last chunk"),
    ("upload.unfinished_max", "UPLOAD_UNFINISHED_MAX", int,
     "unfinished resumable uploads (partial ones included) one ticket may hold (409 above)"),
    ("upload.unfinished_max_bytes", "UPLOAD_UNFINISHED_MAX_BYTES", as_size,
     "bytes one ticket's unfinished resumable uploads may declare, or hold when deferred, "
     "together (413 above; default: UPLOAD_MAX_SIZE)"),
    # The older name of the low-space rule: STORAGE_WARN_PERCENT=90 is STORAGE_ALERT_FREE=10%.
    ("storage.warn_percent", "STORAGE_WARN_PERCENT", as_percent,
     "alias: disk use (%) at which storage is low; sets STORAGE_ALERT_FREE to the rest"),
    ("session.secure", "SESSION_COOKIE_SECURE", as_secure,
     "`auto` (Secure when served over https), `true` or `false`"),
    ("hsts.max_age", "HSTS_MAX_AGE", int,
     "seconds browsers keep to https (Strict-Transport-Security on https answers); 0: none"),
    ("ticket.attempts", "TICKET_ATTEMPTS", int, "upload attempts of a new ticket"),
    ("ticket.lifetime_days", "TICKET_LIFETIME_DAYS", int, "days a new ticket's token lives"),
    ("auth.access_lifetime", "ACCESS_TOKEN_LIFETIME", int, "seconds an access token lives"),
    ("auth.refresh_lifetime", "REFRESH_TOKEN_LIFETIME", int, "seconds a refresh token lives"),
    ("inspect.max_index_bytes", "INSPECT_MAX_INDEX_BYTES", as_size,
     "uncompressed bytes read at most to build one archive's member index"),
    ("inspect.max_ratio", "INSPECT_MAX_RATIO", float,
     "largest uncompressed/compressed ratio before data counts as a decompression bomb"),
    ("inspect.max_members", "INSPECT_MAX_MEMBERS", int, "members listed at most per archive"),
    ("inspect.max_read_bytes", "INSPECT_MAX_READ_BYTES", as_size,
     "uncompressed bytes one view or member download may produce"),
    ("inspect.search_max_bytes", "INSPECT_SEARCH_MAX_BYTES", as_size,
     "uncompressed bytes one search reads at most"),
    ("inspect.search_timeout", "INSPECT_SEARCH_TIMEOUT", float,
     "seconds one search runs at most"),
    ("inspect.search_concurrency", "INSPECT_SEARCH_CONCURRENCY", int,
     "searches running at once per process; one more is answered 503"),
    ("storage.alert_free", "STORAGE_ALERT_FREE", as_free_space,
     "free space (a size, or a share of the total: 10%) below which storage is low: "
     "/check/storage, the gauge, the banner, the storage.low alert, /metrics; 0: off"),
    ("retention.resolved_days", "RETENTION_RESOLVED_DAYS", int,
     "days after its ticket was resolved that `collector purge` deletes an archive; 0: never"),
    ("retention.max_days", "RETENTION_MAX_DAYS", int,
     "days after its upload that `collector purge` deletes any archive; 0: never"),
    ("webhooks.worker", "WEBHOOK_WORKER", as_bool,
     "run the webhook and low-space worker thread in the server process"),
    ("md5.worker", "MD5_WORKER", as_bool,
     "compute the md5 of archives over 4 MiB in a thread of the server process after "
     "their upload (false: `collector purge` does)"),
    ("webhooks.interval", "WEBHOOK_INTERVAL", float, "seconds between the worker's passes"),
    ("webhooks.timeout", "WEBHOOK_TIMEOUT", float, "seconds a receiver has to answer"),
    ("webhooks.backoff", "WEBHOOK_BACKOFF", float, "seconds before the first retry (doubling)"),
    ("webhooks.backoff_max", "WEBHOOK_BACKOFF_MAX", float, "longest wait between retries"),
    ("webhooks.retry_hours", "WEBHOOK_RETRY_HOURS", float,
     "hours after the event that a delivery is retried before it is failed"),
    ("waitress.listen", "WAITRESS_LISTEN", as_listen, "host:port the server listens on"),
    ("waitress.threads", "WAITRESS_THREADS", int, "worker threads"),
    ("waitress.channel_timeout", "WAITRESS_CHANNEL_TIMEOUT", int,
     "seconds a connection sending a body or receiving an answer may stay silent"),
    ("waitress.idle_timeout", "WAITRESS_IDLE_TIMEOUT", int,
     "seconds a connection without a request in progress lives"),
    ("waitress.header_timeout", "WAITRESS_HEADER_TIMEOUT", int,
     "seconds a request's headers may take to arrive, from their first byte"),
    ("waitress.connection_limit", "WAITRESS_CONNECTION_LIMIT", int, "open connections at most"),
    ("waitress.connection_limit_per_address", "WAITRESS_CONNECTION_LIMIT_PER_ADDRESS", int,
     "open connections at most from one client address (0: no limit; the trusted proxy "
     "is exempt)"),
    ("waitress.recv_bytes", "WAITRESS_RECV_BYTES", as_size, "bytes read per socket recv"),
    ("waitress.max_request_body_size", "WAITRESS_MAX_REQUEST_BODY_SIZE", as_size,
     "largest request body waitress buffers (default: UPLOAD_MAX_SIZE + 1 MiB)"),
    ("waitress.trusted_proxy", "WAITRESS_TRUSTED_PROXY", str, "address of a reverse proxy"),
    ("waitress.trusted_proxy_headers", "WAITRESS_TRUSTED_PROXY_HEADERS", str,
     "headers taken from that proxy (e.g. `x-forwarded-for x-forwarded-proto`)"),
    ("waitress.trusted_proxy_count", "WAITRESS_TRUSTED_PROXY_COUNT", int,
     "proxies in front of the app whose X-Forwarded-For entries are believed"),
    ("waitress.backlog", "WAITRESS_BACKLOG", int, "connections the kernel queues for accept"),
    ("waitress.outbuf_high_watermark", "WAITRESS_OUTBUF_HIGH_WATERMARK", as_size,
     "answer bytes buffered per connection before the worker thread waits for the client"),
    ("shutdown.grace", "SHUTDOWN_GRACE", float,
     "seconds `collector serve` lets requests in flight finish after SIGTERM or SIGINT"),
    ("metrics.token", "METRICS_TOKEN", str, "bearer token of /metrics; empty: /metrics is off"),
    ("metrics.allow", "METRICS_ALLOW", as_networks,
     "client networks that may read /metrics (empty: any)"),
    ("log.format", "LOG_FORMAT", as_log_format, "`text` or `json` (one object a line)"),
    ("log.level", "LOG_LEVEL", as_log_level, "level of the root logger (empty: the ini's)"),
    ("access_log.enabled", "ACCESS_LOG", as_bool, "one line per request"),
    ("access_log.format", "ACCESS_LOG_FORMAT", as_access_log_format,
     "the access log line's format"),
]

DEFAULTS = {
    "secret_key": "",
    "debug": False,
    "allowed_hosts": ["*"],
    "csrf_trusted_origins": [],
    "db_url": "",
    "tz": "UTC",
    "data_dir": "var",
    "upload.max_size": 4 * 1024**3,
    "storage.reserve": 256 * 1024**2,
    "storage.url": "",
    "storage.endpoint_url": "",
    "storage.region": "",
    "storage.quota": 0,
    "storage.download": "stream",
    "storage.download_expiry": 300,
    "upload.tus_expiry_days": 7,
    "upload.unfinished_max": 16,
    "storage.warn_percent": None,
    "session.secure": "auto",
    "hsts.max_age": 365 * 24 * 3600,
    "ticket.attempts": 5,
    "ticket.lifetime_days": 7,
    "auth.access_lifetime": 15 * 60,
    "auth.refresh_lifetime": 7 * 24 * 3600,
    "inspect.max_index_bytes": 64 * 1024**3,
    "inspect.max_ratio": 200.0,
    "inspect.max_members": 200_000,
    "inspect.max_read_bytes": 4 * 1024**3,
    "inspect.search_max_bytes": 8 * 1024**3,
    "inspect.search_timeout": 20.0,
    "inspect.search_concurrency": 2,
    "storage.alert_free": "10%",
    "retention.resolved_days": 0,
    "retention.max_days": 0,
    "webhooks.worker": True,
    "md5.worker": True,
    "webhooks.interval": 5.0,
    "webhooks.timeout": 5.0,
    "webhooks.backoff": 30.0,
    "webhooks.backoff_max": 3600.0,
    "webhooks.retry_hours": 24.0,
    "waitress.listen": "127.0.0.1:6543",
    "waitress.threads": 8,
    "waitress.channel_timeout": 120,
    "waitress.idle_timeout": 15,
    "waitress.header_timeout": 10,
    "waitress.connection_limit": 200,
    "waitress.connection_limit_per_address": 32,
    "waitress.recv_bytes": 256 * 1024,
    "waitress.trusted_proxy": "",
    "waitress.trusted_proxy_headers": "",
    "waitress.trusted_proxy_count": 1,
    "waitress.backlog": 1024,
    "waitress.outbuf_high_watermark": 16 * 1024**2,
    "shutdown.grace": 30.0,
    "metrics.token": "",
    "metrics.allow": [],
    "log.format": "text",
    "log.level": "",
    "access_log.enabled": True,
    "access_log.format": DEFAULT_ACCESS_LOG_FORMAT,
}

_COERCERS = {key: coercer for key, _, coercer, _ in ENV_OVERRIDES}

# Counts, sizes, ages and durations are never negative; these mean nothing at 0 either
# (a ticket nobody can upload to, a server without threads …). The idle and header
# timeouts have their own rule in ``load``.
AT_LEAST_ONE = {
    "ticket.attempts", "ticket.lifetime_days", "upload.tus_expiry_days",
    "auth.access_lifetime", "auth.refresh_lifetime", "inspect.max_ratio",
    "waitress.threads", "waitress.channel_timeout", "waitress.connection_limit",
    "waitress.recv_bytes", "waitress.max_request_body_size", "waitress.trusted_proxy_count",
}
ABOVE_ZERO = {"webhooks.interval", "webhooks.timeout", "inspect.search_timeout"}

# Keys of the app's ini section that are not ours but are read by what the app includes,
# by PasteDeploy, or by the tests (an engine handed in).
FOREIGN_PREFIXES = ("pyramid.", "jinja2.", "tm.", "retry.", "cornice.", "debugtoolbar.")
FOREIGN_KEYS = {"here", "__file__", "use", "filter-with", "collector.engine"}


def _check_known_keys(settings):
    """A key of the app's section that nothing reads is refused: a typo
    (``waitress.thread``) would otherwise run silently with the default."""
    known = set(_COERCERS) | set(DEFAULTS)
    for key in settings:
        if key in known or key in FOREIGN_KEYS or key.startswith(FOREIGN_PREFIXES):
            continue
        near = difflib.get_close_matches(key, sorted(known), n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        raise SettingsError(f"{key}: unknown setting in the app's ini section{hint}; "
                            "docs/configuration.md lists them")


def _check_number(key, variable, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if key in ABOVE_ZERO:
        ok, wanted = value > 0, "more than 0"
    else:
        minimum = 1 if key in AT_LEAST_ONE else 0
        ok, wanted = value >= minimum, f"{minimum} or more"
    if not ok or not math.isfinite(value):
        raise SettingsError(f"{variable}: must be {wanted}, not {value!r}")


def load(settings, environ=None):
    """Return the typed, validated settings: ini values, then environment overrides."""
    environ = os.environ if environ is None else environ
    _check_known_keys(settings)
    low_alias = _low_space_alias(settings, environ)
    result = dict(settings)
    for key, value in DEFAULTS.items():
        result.setdefault(key, value)
    for key, variable, coercer, _ in ENV_OVERRIDES:
        source = environ[variable] if variable in environ else result.get(key)
        if source is None:
            continue
        try:
            result[key] = coercer(source)
        except (ValueError, zoneinfo.ZoneInfoNotFoundError) as exc:
            raise SettingsError(f"{variable}: {exc}") from None
        _check_number(key, variable, result[key])
    if low_alias:
        result["storage.alert_free"] = Share(100.0 - result["storage.warn_percent"])
    data_dir = Path(result["data_dir"]).expanduser()
    if "here" in result and not data_dir.is_absolute():
        data_dir = Path(result["here"]) / data_dir
    result["data_dir"] = str(data_dir.resolve())
    if not result["db_url"]:
        result["db_url"] = f"sqlite:///{data_dir.resolve() / 'db.sqlite3'}"
    result.setdefault("waitress.max_request_body_size", result["upload.max_size"] + 1024**2)
    # One archive's worth: partial uploads beyond it could never be joined (413).
    result.setdefault("upload.unfinished_max_bytes", result["upload.max_size"])
    if not result["debug"] and result["secret_key"] in DEFAULT_SECRET_KEYS:
        raise SettingsError(
            "SECRET_KEY: production (DEBUG false) refuses an empty or default secret key")
    if len(result["secret_key"]) < 16 and not result["debug"]:
        raise SettingsError("SECRET_KEY: must be at least 16 characters in production")
    if result["storage.url"] and not result["storage.quota"]:
        # Without it the free-space checks (507, the gauge, the alert) would mean nothing.
        raise SettingsError("STORAGE_QUOTA: required with an s3:// STORAGE_URL (the bytes "
                            "the archives may take in the bucket, e.g. 500GiB)")
    if result["storage.download"] == "redirect" and not result["storage.url"]:
        # Refused rather than ignored: an operator who asked for redirects expects the
        # bytes to bypass the app, and a local disk has no URL to send anyone to.
        raise SettingsError("STORAGE_DOWNLOAD: `redirect` needs an s3:// STORAGE_URL (a "
                            "local disk has no presigned URLs); use `stream`")
    for key, variable in (("waitress.idle_timeout", "WAITRESS_IDLE_TIMEOUT"),
                          ("waitress.header_timeout", "WAITRESS_HEADER_TIMEOUT")):
        if result[key] < 1:
            raise SettingsError(f"{variable}: must be at least 1 second")
    if result["shutdown.grace"] < 0:
        raise SettingsError("SHUTDOWN_GRACE: must be 0 (stop at once) or more seconds")
    if result["hsts.max_age"] < 0:
        raise SettingsError("HSTS_MAX_AGE: must be 0 (no header) or more seconds")
    if result["waitress.connection_limit_per_address"] < 0:
        raise SettingsError("WAITRESS_CONNECTION_LIMIT_PER_ADDRESS: must be 0 (no limit) or "
                            "more")
    if 0 < len(result["metrics.token"]) < 16 and not result["debug"]:
        raise SettingsError("METRICS_TOKEN: must be at least 16 characters in production")
    if not result["debug"] and (not result["allowed_hosts"] or "*" in result["allowed_hosts"]):
        # Links in answers and mails are built from Host: any Host means poisoned links
        # and DNS rebinding; the names must be said, as the secret key must.
        raise SettingsError("ALLOWED_HOSTS: production (DEBUG false) needs the host names "
                            "served, e.g. ALLOWED_HOSTS=logs.example.com (empty or `*` is "
                            "refused)")
    return result


def _low_space_alias(settings, environ):
    """Whether STORAGE_WARN_PERCENT decides the low-space rule: when it is given at a level
    above STORAGE_ALERT_FREE (the environment over the ini over the default); at the same
    level STORAGE_ALERT_FREE, the rule's own name, wins."""

    def level(key, variable):
        return 2 if variable in environ else 1 if settings.get(key) is not None else 0

    return level("storage.warn_percent", "STORAGE_WARN_PERCENT") > \
        level("storage.alert_free", "STORAGE_ALERT_FREE")


def waitress_options(settings):
    """Keyword arguments for ``collector.server.serve`` from the typed settings: waitress's
    own, and the per-address limit and short timeouts that ``collector.server`` adds."""
    options = {
        "listen": settings["waitress.listen"],
        "threads": settings["waitress.threads"],
        "channel_timeout": settings["waitress.channel_timeout"],
        "connection_limit": settings["waitress.connection_limit"],
        # collector.server's own (waitress has no such rules).
        "connection_limit_per_address": settings["waitress.connection_limit_per_address"],
        "idle_timeout": settings["waitress.idle_timeout"],
        "header_timeout": settings["waitress.header_timeout"],
        "recv_bytes": settings["waitress.recv_bytes"],
        "backlog": settings["waitress.backlog"],
        "outbuf_high_watermark": settings["waitress.outbuf_high_watermark"],
        "max_request_body_size": settings["waitress.max_request_body_size"],
        # Bodies above this go to a temp file; the app sets tempfile's directory to
        # DATA_DIR/tmp so that file lives on the same disk as the archives.
        "inbuf_overflow": 512 * 1024,
        "ident": "logs-collector",
    }
    if settings["waitress.trusted_proxy"]:
        options["trusted_proxy"] = settings["waitress.trusted_proxy"]
        options["trusted_proxy_headers"] = (
            settings["waitress.trusted_proxy_headers"] or "x-forwarded-for x-forwarded-proto")
        options["trusted_proxy_count"] = settings["waitress.trusted_proxy_count"]
    return options
