"""``/livez`` and ``/readyz``: the probes of process managers and load balancers (the
names Kubernetes uses), beside the API's ``/api/v1/check/health/``.

* ``/livez``: the process answers. Nothing else is asked (no database, no storage), so a
  database outage never makes an orchestrator restart healthy servers.
* ``/readyz``: this server should get new work: the database answers, the storage is
  writable, and the server is not stopping (503 ``draining`` from the first SIGTERM on;
  see collector/server.py).

Both are public and cheap: no session, no transaction, no ORM, no throttle; the storage
probe is the health check's (a write at most every few seconds). They answer any Host
(``security.PROBE_PATHS``): a kubelet or a load balancer asks by address, and the answer
holds no link to poison.
"""

from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.view import view_config

from collector.db import reachable
from collector.security import PROBE_PATHS

# The WSGI environ key that collector.server sets to its draining flag (an Event).
DRAINING = "collector.draining"


def _answer(request, status, body):
    request.response.status_int = status
    request.response.cache_control = "no-store"
    if status == 503:
        request.response.headers["Retry-After"] = "5"
    return body


@view_config(route_name="livez", request_method=("GET", "HEAD"), renderer="json",
             permission=NO_PERMISSION_REQUIRED, require_csrf=False)
def livez(request):
    return _answer(request, 200, {"status": "ok"})


@view_config(route_name="readyz", request_method=("GET", "HEAD"), renderer="json",
             permission=NO_PERMISSION_REQUIRED, require_csrf=False)
def readyz(request):
    draining = request.environ.get(DRAINING)
    if draining is not None and draining.is_set():
        return _answer(request, 503, {"status": "draining"})
    database = reachable(request.registry["db_engine"])
    writable = request.registry["archive_storage"].writable()
    ok = database and writable
    return _answer(request, 200 if ok else 503, {
        "status": "ok" if ok else "error",
        "database": "ok" if database else "unavailable",
        "storage": "ok" if writable else "not writable"})


def includeme(config):
    livez_path, readyz_path = PROBE_PATHS
    config.add_route("livez", livez_path)
    config.add_route("readyz", readyz_path)
