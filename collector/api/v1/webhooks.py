"""/api/v1/webhooks/ — help-desk webhooks and their deliveries; admin only (the tree's
Admin → WebhookContainer context, the same ACL as the /admin/webhooks page)."""

from cornice import Service

from collector.api.v1 import error_handler, json_schema, no_content, paginate, paginated
from collector.security import Permission
from collector.validation import partial
from collector.webhooks import services
from collector.webhooks.schemas import WebhookSchema, delivery_filters

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


def serialise(request, row):
    return services.webhook_json(row)


@webhooks.get(permission=Permission.ADMIN)
def list_webhooks(request):
    rows = services.list_webhooks(request.dbsession)
    return [serialise(request, row) for row in rows]


@webhooks.post(permission=Permission.ADMIN, **json_schema(WebhookSchema()))
def create_webhook(request):
    row = services.add_webhook(request.dbsession, **request.validated)
    request.response.status_int = 201
    return serialise(request, row)


@webhook.get(permission=Permission.ADMIN)
def get_webhook(request):
    return serialise(request, request.context.webhook)


@webhook.patch(permission=Permission.ADMIN, **json_schema(partial(WebhookSchema())))
def patch_webhook(request):
    return serialise(request, services.change_webhook(request.dbsession,
                                                      request.context.webhook,
                                                      **request.validated))


@webhook.delete(permission=Permission.ADMIN)
def delete_webhook(request):
    services.delete_webhook(request.dbsession, request.context.webhook)
    return no_content(request)


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
