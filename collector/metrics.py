"""Prometheus metrics at ``/metrics``: uploads, archives, storage, request latency.

Off unless ``METRICS_TOKEN`` is set: then the view answers only to
``Authorization: Bearer <METRICS_TOKEN>`` (compared in constant time) and, with
``METRICS_ALLOW``, only to client addresses inside those networks. While it is off nothing
is measured either (no tween, no counters).

Where the figures come from:

- **uploads by outcome**: ``upload_ended`` is the one place that counts them. The storage
  manager calls it when a transaction that stored an archive has committed (``stored``,
  whatever the protocol: a single POST, a tus upload's last chunk, a tus concatenation);
  the request tween calls it when a request that *starts* an upload (a single POST/PUT or
  a tus creation) is answered with an error (``refused`` for 4xx, ``failed`` for 5xx,
  with a reason from the status); a tus upload terminated by ``DELETE`` is counted
  ``terminated`` when the storage manager removes its file after the commit. So no upload
  protocol carries metrics code of its own.
- **request latency** by route: the tween, from before the outermost tween to the answer
  (the transaction's commit included; waitress has already buffered the request body).
- **archives, open resumable uploads, storage**: read at scrape time (two small queries and
  a ``statvfs``), kept for ``STATE_TTL`` seconds so several scrapers cost one read.

prometheus-client's metrics lock internally, so every waitress thread may update them.
"""

import hmac
import ipaddress
import logging
import threading
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from pyramid.response import Response
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.tweens import INGRESS
from sqlalchemy import bindparam, func, select

from collector.archives.models import TusUpload
from collector.archives.storage import alerts
from collector.db import utcnow
from collector.models import Archive  # with every other model: relationships resolve
from collector.webhooks.models import WebhookDelivery

log = logging.getLogger(__name__)

# Requests that start an upload: (route name, method). Their error answers are refusals.
UPLOAD_STARTS = {("api.archives", "POST"), ("api.archives", "PUT"),
                 ("api.archive.named", "PUT"), ("api.uploads", "POST")}
# Path prefixes and methods of requests that carry upload bytes (the in-progress gauge is
# raised before routing, so it goes by the path).
_UPLOAD_PATHS = (("/api/v1/archives", {"POST", "PUT"}), ("/api/v1/uploads", {"POST", "PATCH"}))

# Why an upload was refused, from the status of the answer.
REASONS = {400: "bad_request", 401: "token", 403: "token", 404: "not_found", 409: "conflict",
           412: "protocol", 413: "too_large", 415: "protocol", 423: "token", 460: "checksum",
           507: "no_space"}
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

# Seconds: fast API answers (~1 ms) up to multi-gigabyte uploads finishing (minutes).
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
           120, 300)
STATE_TTL = 5.0


class Metrics:
    """The application's metrics, in a registry of its own (one per ``main()``)."""

    def __init__(self, engine, backend, settings):
        self.registry = CollectorRegistry()
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=self.registry)
        self.uploads = Counter(
            "collector_uploads", "Uploads that ended, by outcome (stored, refused, failed) "
            "and reason", ["outcome", "reason"], registry=self.registry)
        self.upload_bytes = Counter(
            "collector_upload_bytes", "Bytes of the uploads that ended, by outcome and "
            "reason (for a refusal: the request body the server received)",
            ["outcome", "reason"], registry=self.registry)
        self.upload_requests = Gauge(
            "collector_upload_requests_in_progress", "Requests carrying upload bytes that "
            "the app is handling now", registry=self.registry)
        self.duration = Histogram(
            "collector_http_request_duration_seconds", "Time to answer a request, by route",
            ["route", "method"], buckets=BUCKETS, registry=self.registry)
        self.responses = Counter(
            "collector_http_responses", "Answers by route and status",
            ["route", "status"], registry=self.registry)
        self.webhooks = Counter(
            "collector_webhook_deliveries", "Webhook delivery attempts by outcome: "
            "delivered, retry (failed, will be retried), failed (given up)", ["outcome"],
            registry=self.registry)
        self.registry.register(StateCollector(engine, backend, settings))
        self._timers, self._answers = {}, {}

    def observe(self, route, method, status, elapsed):
        """One answered request. The labelled children are kept in plain dicts: ``labels()``
        takes the metric's lock on every call, a dict lookup takes none (a lost race
        only makes ``labels()`` run twice and return the same child)."""
        key = (route, method)
        timer = self._timers.get(key) or self._timers.setdefault(
            key, self.duration.labels(route, method))
        timer.observe(elapsed)
        key = (route, status)
        counter = self._answers.get(key) or self._answers.setdefault(
            key, self.responses.labels(route, str(status)))
        counter.inc()

    def upload_ended(self, outcome, size, reason=""):
        """Count one upload that ended; the one place every protocol's outcome goes."""
        self.uploads.labels(outcome, reason).inc()
        if size:
            self.upload_bytes.labels(outcome, reason).inc(size)


    def webhook_attempt(self, outcome):
        """One webhook delivery attempt of this process's worker ended."""
        self.webhooks.labels(outcome).inc()


class StateCollector:
    """Figures read when scraped: archives and open uploads (database), disk space."""

    def __init__(self, engine, backend, settings):
        self.engine = engine
        self.backend = backend
        self.settings = settings
        self.reserve = settings["storage.reserve"]
        self._lock = threading.Lock()
        self._cached = (float("-inf"), None)

    def describe(self):
        # Nothing to describe in advance: registering must not query the database.
        return []

    def collect(self):
        with self._lock:
            taken, state = self._cached
            if time.monotonic() - taken >= STATE_TTL:
                state = self._read()
                self._cached = (time.monotonic(), state)
        for name, documentation, value in state:
            yield GaugeMetricFamily(name, documentation, value=value)

    def _read(self):
        usage = self.backend.usage()
        state = [
            ("collector_storage_free_bytes", "Free bytes on the archive storage's disk",
             usage["free"]),
            ("collector_storage_total_bytes", "Size of the archive storage's disk",
             usage["total"]),
            ("collector_storage_reserve_bytes", "Free space always kept (STORAGE_RESERVE); "
             "uploads are refused (507) below it", self.reserve),
            ("collector_storage_low_threshold_bytes", "Free space below which storage is "
             "low (STORAGE_ALERT_FREE); 0: never", alerts.low_threshold(
                 self.settings, usage["total"])),
            ("collector_storage_low", "1 while storage is low (the rule of /check/storage, "
             "the gauge and the storage.low alert)", int(alerts.is_low(usage, self.settings))),
        ]
        try:
            with self.engine.connect() as connection:
                count, size = connection.execute(_ARCHIVES).one()
                open_uploads = connection.execute(
                    _OPEN_UPLOADS, {"now": utcnow()}).scalar_one()
                pending = connection.execute(_PENDING_WEBHOOKS).scalar_one()
                md5_pending = connection.execute(_MD5_PENDING).scalar_one()
        except Exception:  # a scrape must answer even when the database does not
            log.exception("metrics: could not read the database")
            return [*state, ("collector_database_up", _DATABASE_UP, 0)]
        return [*state, ("collector_database_up", _DATABASE_UP, 1),
                ("collector_archives", "Archives stored", count),
                ("collector_archive_bytes", "Bytes of all archives stored", size),
                ("collector_resumable_uploads_open", "tus uploads created, not finished "
                 "and not expired", open_uploads),
                ("collector_webhook_deliveries_pending", "Webhook events waiting to be "
                 "delivered (all workers)", pending),
                ("collector_archives_md5_pending", "Archives whose md5 is still being "
                 "computed in the background (all processes)", md5_pending)]


_DATABASE_UP = "Whether the last read of the database for metrics worked"
# Core tables, not ORM entities: building these at import needs no configured mappers.
_archives, _uploads = Archive.__table__.c, TusUpload.__table__.c
_ARCHIVES = select(func.count(), func.coalesce(func.sum(_archives.size), 0))
_MD5_PENDING = select(func.count()).where(_archives.md5.is_(None))
_deliveries = WebhookDelivery.__table__
_PENDING_WEBHOOKS = (select(func.count()).select_from(_deliveries)
                     .where(_deliveries.c.state == "pending"))
_OPEN_UPLOADS = (select(func.count()).select_from(TusUpload.__table__)
                 .where(_uploads.finished_at.is_(None), _uploads.expires_at > bindparam("now")))


def route_of(request, status):
    """A bounded label: the route's name, the page's context and view, or ``not_found``."""
    route = getattr(request, "matched_route", None)
    if route is not None:
        return route.name
    # A page's view name comes from the URL: only a found view makes it a label.
    if status == 404:
        return "not_found"
    context = getattr(request, "context", None)
    if context is None:  # answered before routing (e.g. the allowed-hosts tween)
        return "unrouted"
    view = getattr(request, "view_name", "")
    return f"page:{type(context).__name__}/{view}" if view else f"page:{type(context).__name__}"


def _carries_upload(request):
    method, path = request.method, request.path_info
    return any(path.startswith(prefix) and method in methods
               for prefix, methods in _UPLOAD_PATHS)


def metrics_tween_factory(handler, registry):
    metrics = registry["metrics"]

    def tween(request):
        start = time.perf_counter()
        uploading = _carries_upload(request)
        if uploading:
            metrics.upload_requests.inc()
        status = 500
        try:
            response = handler(request)
            status = response.status_int
            return response
        finally:
            if uploading:
                metrics.upload_requests.dec()
            elapsed = time.perf_counter() - start
            # Read after the handler: X-HTTP-Method-Override may have changed the method.
            method = request.method if request.method in METHODS else "other"
            route = route_of(request, status)
            metrics.observe(route, method, status, elapsed)
            if status >= 400 and (route, method) in UPLOAD_STARTS:
                outcome = "failed" if status >= 500 else "refused"
                metrics.upload_ended(outcome, request.content_length or 0,
                                     REASONS.get(status, "error" if status >= 500 else "other"))

    return tween


def _client_allowed(address, networks):
    if not networks:
        return True
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    if getattr(ip, "ipv4_mapped", None) is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


def _plain(status, text, **headers):
    return Response(text + "\n", status=status, content_type="text/plain", charset="utf-8",
                    headers=headers)


def metrics_view(request):
    settings = request.registry.settings
    if not _client_allowed(request.remote_addr, settings["metrics.allow"]):
        return _plain(403, "this address may not read the metrics")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    expected = settings["metrics.token"].encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        return _plain(401, "Authorization: Bearer <METRICS_TOKEN> is required",
                      **{"WWW-Authenticate": 'Bearer realm="metrics"'})
    response = Response(generate_latest(request.registry["metrics"].registry))
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    response.cache_control = "no-store"
    return response


def includeme(config):
    settings = config.get_settings()
    if not settings["metrics.token"]:
        return  # off: /metrics is a 404 and nothing is measured
    config.registry["metrics"] = Metrics(config.registry["db_engine"],
                                         config.registry["archive_storage"], settings)
    config.add_tween("collector.metrics.metrics_tween_factory", under=INGRESS)
    config.add_route("metrics", "/metrics")
    config.add_view(metrics_view, route_name="metrics", request_method="GET",
                    permission=NO_PERMISSION_REQUIRED)
