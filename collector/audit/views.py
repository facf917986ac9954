"""/admin/audit: the whole audit log for admins, with the API's filters."""

import urllib.parse

from pyramid.view import view_config

from collector.audit import services
from collector.audit.schemas import filters_from
from collector.errors import DomainError
from collector.numbers import parse_natural
from collector.resources import AdminContainer
from collector.security import Permission

PAGE_SIZE = 100
# Offered as suggestions in the filter form; any action (or a prefix ending in ".") works.
ACTIONS = ("signin.", "2fa.", "token.", "user.", "platform.", "ticket.", "upload.",
           "upload.refused", "upload.failed", "archive.", "ticket.hold", "ticket.release",
           "webhook.", "storage.", "import.")


@view_config(context=AdminContainer, name="audit", request_method="GET",
             permission=Permission.ADMIN, renderer="audit/admin_audit.jinja2")
def audit_page(request):
    params = request.GET
    form = {name: params.get(name, "") for name in ("actor", "ticket", "action", "since",
                                                    "until")}
    offset = parse_natural(params.get("offset", "0")) or 0
    page = {"form": form, "actions": ACTIONS, "offset": offset,
            "prev_url": None, "next_url": None, "error": None}
    try:
        filters = filters_from(params)
    except DomainError as exc:
        request.response.status_int = exc.status
        return {**page, "events": [], "total": 0, "error": exc.detail}
    events, total = services.list_events(request.dbsession, filters, PAGE_SIZE, offset)

    def url(new_offset):
        query = {k: v for k, v in form.items() if v}
        query["offset"] = new_offset
        return f"{request.application_url}/admin/audit?{urllib.parse.urlencode(query)}"

    if offset > 0:
        page["prev_url"] = url(max(offset - PAGE_SIZE, 0))
    if offset + PAGE_SIZE < total:
        page["next_url"] = url(offset + PAGE_SIZE)
    return {**page, "events": events, "total": total}
