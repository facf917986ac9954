"""The audit log's filters, read from a query string by the API and the admin page alike
(and its time bounds by ``collector audit export``)."""

from collector.db import as_integer
from collector.errors import BadRequest
from collector.validation import parse_time


def filters_from(params):
    """The log's filters from a query string."""
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
