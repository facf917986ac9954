"""What a webhook may be sent as, and the deliveries' filters: the API and the admin page
read both the same way."""

import colander

from collector.db import as_integer
from collector.errors import BadRequest
from collector.validation import Boolean, String

STATES = ("pending", "delivered", "failed")


class WebhookSchema(colander.MappingSchema):
    platform = colander.SchemaNode(
        String(), validator=colander.Length(1, 20),
        description="Platform name: its tickets' events are sent")
    url = colander.SchemaNode(String(), validator=colander.Length(1, 2000),
                              description="http:// or https://")
    # Empty: the server makes one (services.check_secret).
    secret = colander.SchemaNode(
        String(allow_empty=True), validator=colander.Length(0, 200), missing="",
        description="16–200 characters; empty: the server makes one")
    active = colander.SchemaNode(Boolean(), missing=True)


def delivery_filters(params):
    """The deliveries' filters from a query string."""
    filters = {}
    hook = (params.get("webhook") or "").strip()
    if hook:
        filters["webhook"] = as_integer(hook, minimum=0)
        if filters["webhook"] is None:
            raise BadRequest("webhook must be a webhook id")
    state = (params.get("state") or "").strip()
    if state:
        if state not in STATES:
            raise BadRequest(f"state must be one of {', '.join(STATES)}")
        filters["state"] = state
    event = (params.get("event") or "").strip()
    if event:
        filters["event"] = event[:40]
    return filters
