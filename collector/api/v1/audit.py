"""/api/v1/audit/ — the audit log, newest first; admin only (the tree's Admin context)."""

from cornice import Service

from collector.api.v1 import error_handler, paginate, paginated
from collector.audit import services
from collector.audit.schemas import filters_from
from collector.security import Permission

audit = Service(name="audit", pyramid_route="api.audit",
                description="The audit log (admin only)", error_handler=error_handler)


def serialise(request, row):
    return services.as_json(row)


@audit.get(permission=Permission.ADMIN)
def list_events(request):
    limit, offset = paginate(request)
    rows, total = services.list_events(request.dbsession, filters_from(request.GET), limit,
                                       offset)
    return paginated(request, rows, total, limit, offset, serialise)
