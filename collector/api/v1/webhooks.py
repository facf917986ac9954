"""/api/v1/webhooks/ — help-desk webhooks and their deliveries; admin only (the tree's
Admin → WebhookContainer context, the same ACL as the /admin/webhooks page)."""

import colander
from cornice import Service

from collector.api.v1 import (
    Boolean,
    error_handler,
    json_body,
    no_content,
    paginate,
    paginated,
    partial,
    validate,
)
from collector.db import as_integer
from collector.errors import BadRequest
from collector.security import Permission
from collector.tickets import services as tickets
from collector.webhooks import services

webhooks = Service(name="webhooks", pyramid_route="api.webhooks",
                   description="Help-desk webhooks (admin only)", error_handler=error_handler)
webhook = Service(name="webhook", pyramid_route="api.webhook",
                  description="One webhook (admin only)", error_handler=error_handler)
deliveries = Service(name="webhook_deliveries", pyramid_route="api.webhook.deliveries",
                     description="Webhook deliveries and their attempts (admin only)",
                     error_handler=error_handler)
redeliver = Service(name="webhook_redeliver", pyramid_route="api.webhook.redeliver",
                    description="Send a delivered or failed event again (admin only)",
                    error_handler=error_handler)

STATES = ("pending", "delivered", "failed")


class WebhookSchema(colander.MappingSchema):
    platform = colander.SchemaNode(colander.String(), validator=colander.Length(1, 20))
    url = colander.SchemaNode(colander.String(), validator=colander.Length(1, 2000))
    secret = colander.SchemaNode(colander.String(allow_empty=True),
                                 validator=colander.Length(0, 200), missing="")
    active = colander.SchemaNode(Boolean(), missing=True)


def serialise(request, row):
    return services.webhook_json(row)


@webhooks.get(permission=Permission.ADMIN)
def list_webhooks(request):
    rows = services.list_webhooks(request.dbsession)
    return [serialise(request, row) for row in rows]


@webhooks.post(permission=Permission.ADMIN)
def create_webhook(request):
    data = validate(WebhookSchema(), json_body(request))
    platform = tickets.require_platform(request.dbsession, data["platform"])
    row = services.create_webhook(request.dbsession, platform, data["url"], data["secret"],
                                  data["active"])
    request.response.status_int = 201
    return serialise(request, row)


@webhook.get(permission=Permission.ADMIN)
def get_webhook(request):
    return serialise(request, request.context.webhook)


@webhook.patch(permission=Permission.ADMIN)
def patch_webhook(request):
    data = validate(partial(WebhookSchema()), json_body(request))
    if "platform" in data:
        data["platform_id"] = tickets.require_platform(request.dbsession,
                                                       data.pop("platform")).id
    row = services.update_webhook(request.dbsession, request.context.webhook, **data)
    request.dbsession.refresh(row)
    return serialise(request, row)


@webhook.delete(permission=Permission.ADMIN)
def delete_webhook(request):
    services.delete_webhook(request.dbsession, request.context.webhook)
    return no_content(request)


def delivery_filters(params):
    """Filters from a query string; shared with the admin page."""
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


@deliveries.get(permission=Permission.ADMIN)
def list_deliveries(request):
    limit, offset = paginate(request)
    rows, total = services.list_deliveries(request.dbsession, delivery_filters(request.GET),
                                           limit, offset)
    return paginated(request, rows, total, limit, offset,
                     lambda request, row: services.delivery_json(row))


@redeliver.post(permission=Permission.ADMIN)
def redeliver_event(request):
    row = services.redeliver(request.dbsession, request.matchdict["id"])
    request.response.status_int = 201
    return services.delivery_json(row)
