"""/api/v1/check/… — health (anyone), storage (staff), the state of one upload token."""

from cornice import Service

from collector.api.v1 import error_handler, iso
from collector.archives import services as archives
from collector.archives.storage import alerts
from collector.db import reachable
from collector.errors import NotFound
from collector.security import Permission
from collector.tickets import services as tickets

health = Service(name="check_health", pyramid_route="api.check.health",
                 description="Is the service up: database and storage", error_handler=error_handler)
storage = Service(name="check_storage", pyramid_route="api.check.storage",
                  description="Disk usage of the archive storage", error_handler=error_handler)
token = Service(name="check_token", pyramid_route="api.check.token",
                description="State of an upload token", error_handler=error_handler)

@health.get()
def get_health(request):
    # No session, no transaction to join: health is asked often (load balancers, monitors).
    database = reachable(request.registry["db_engine"])
    writable = request.storage.backend.writable()
    body = {"status": "ok" if database and writable else "error",
            "database": "ok" if database else "unavailable",
            "storage": "ok" if writable else "not writable"}
    if body["status"] != "ok":
        request.response.status_int = 503
        request.response.headers["Retry-After"] = "5"
    request.response.cache_control = "no-store"
    return body


def storage_state(request):
    settings = request.registry.settings
    usage = request.storage.backend.usage()
    used_percent = round(100.0 * usage["used"] / usage["total"], 2) if usage["total"] else 0.0
    # "low" and "full": the one low-space rule (STORAGE_ALERT_FREE, STORAGE_RESERVE).
    return {**usage, "used_percent": used_percent, "reserve": settings["storage.reserve"],
            "status": alerts.level(usage, settings)}


@storage.get(permission=Permission.VIEW)
def get_storage(request):
    return storage_state(request)


@token.get()
def get_token(request):
    # Asked often (uploader.sh, the upload page): short transactions of its own, no
    # session joined to the request's transaction (measured: 35 % of the request).
    engine = request.registry["db_engine"]
    ticket = tickets.judged_token_state(engine, request.matchdict["token"],
                                        request.remote_addr or "")
    if ticket is None:
        raise NotFound("upload token is not valid")
    refusal = tickets.token_refusal(ticket)
    request.response.cache_control = "no-store"
    # The fields of the original logs-collector first (its clients read them, and
    # uploader.sh takes the first key of a name, so `resumable`'s own `expires_at` must come
    # after the token's), then the uploads this token can still finish, whether or not it
    # may start a new one.
    return {"token": ticket.token, "ticket": ticket.number, "attempts": ticket.attempts,
            "resolved": ticket.resolved,
            "expires_at": iso(ticket.expires_at), "valid": refusal is None,
            "reason": refusal.reason if refusal else None,
            "detail": refusal.message if refusal else "token is valid",
            "resumable": [{"name": row.filename, "size": row.length, "received": row.offset,
                           "expires_at": iso(row.expires_at)}
                          for row in archives.resumable_uploads(engine, ticket)]}
