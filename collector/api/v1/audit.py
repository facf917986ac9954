"""/api/v1/audit/ — the audit log, newest first; admin only (the tree's Admin context)."""

from cornice import Service

from collector.api.v1 import error_handler, paginate, paginated, parse_time
from collector.audit import services
from collector.db import as_integer
from collector.errors import BadRequest
from collector.security import Permission

audit = Service(name="audit", pyramid_route="api.audit",
                description="The audit log (admin only)", error_handler=error_handler)


def filters_from(params):
    """The log's filters from a query string; shared by the API and the admin page."""
    filters = {}
    ticket = (params.get("ticket") or "").strip()
    if ticket:
        filters["ticket"] = as_integer(ticket, minimum=0)
        if filters["ticket"] is None:
            raise BadRequest("ticket must be a ticket number")
    for name in ("actor", "action"):
        value = (params.get(name) or "").strip()
        if value:
            filters[name] = value[:150]
    for name in ("since", "until"):
        value = (params.get(name) or "").strip()
        if value:
            filters[name] = parse_time(value, name)
    return filters


def serialise(request, row):
    return services.as_json(row)


@audit.get(permission=Permission.ADMIN)
def list_events(request):
    limit, offset = paginate(request)
    rows, total = services.list_events(request.dbsession, filters_from(request.GET), limit,
                                       offset)
    return paginated(request, rows, total, limit, offset, serialise)
