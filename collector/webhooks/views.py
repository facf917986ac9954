"""/admin/webhooks/: the admin's page of webhooks and of every delivery and its attempts.

The rules are ``webhooks.services``' commands and the form is read by the API's schema
(``webhooks.schemas``), as are the filters; a refused form is shown again with its
message (400) and commits nothing.

A webhook's secret is in the page only once: on the page that follows its creation or its
rotation here (the redirect leaves the webhook's id, never the secret, in the signed
session). Otherwise the page shows a hint of it (``services.secret_hint``); an admin who
lost it rotates it, or reads it with the API (``GET /api/v1/webhooks/{id}/``).
"""

from pyramid.httpexceptions import HTTPSeeOther
from pyramid.view import view_config

from collector.errors import DomainError
from collector.resources import WebhookContainer, WebhookNode
from collector.security import Permission
from collector.tickets import services as tickets
from collector.validation import validate
from collector.webhooks import services
from collector.webhooks.schemas import STATES, WebhookSchema, delivery_filters

PAGE_SIZE = 50
# The session's flash queue naming the webhook whose secret the next page shows in full.
SHOW_SECRET = "webhook-secret"


def _secret_to_show(request):
    """The webhook whose secret this page shows, once (see the module's docstring)."""
    if "session" not in request.cookies:
        return None
    ids = request.session.pop_flash(SHOW_SECRET)
    hook = services.get_webhook(request.dbsession, ids[-1]) if ids else None
    if hook is not None:
        request.response.cache_control = "no-store"
    return hook


def _page(request, form=None, error=None):
    params = request.GET
    try:
        filters = delivery_filters(params)
    except DomainError as exc:
        filters, error = {}, error or exc.detail
        request.response.status_int = exc.status
    rows, total = services.list_deliveries(request.dbsession, filters, PAGE_SIZE, 0)
    platforms, _ = tickets.list_platforms(request.dbsession, request.identity.user, 1000, 0)
    return {"nav": "admin", "webhooks": services.list_webhooks(request.dbsession),
            "deliveries": rows, "total": total, "platforms": platforms,
            "filters": {name: params.get(name, "") for name in ("webhook", "state", "event")},
            "states": STATES, "events": services.EVENT_NAMES,
            "secret_hint": services.secret_hint, "shown": _secret_to_show(request),
            "form": form or {"platform": "", "url": "", "secret": ""}, "error": error}


@view_config(context=WebhookContainer, name="", permission=Permission.ADMIN,
             request_method="GET", renderer="webhooks/admin_webhooks.jinja2")
def webhooks_page(request):
    return _page(request)


@view_config(context=WebhookContainer, name="", permission=Permission.ADMIN,
             request_method="POST", renderer="webhooks/admin_webhooks.jinja2")
def create_webhook(request):
    form = {name: request.POST.get(name, "").strip() for name in ("platform", "url", "secret")}
    try:
        hook = services.add_webhook(request.dbsession,
                                    **validate(WebhookSchema(), form, "form"))
    except DomainError as exc:
        request.tm.doom()
        request.response.status_int = exc.status
        return _page(request, form, exc.detail)
    request.session.flash(f"Webhook for {hook.platform.name} added.", "success")
    request.session.flash(hook.id, SHOW_SECRET)
    return HTTPSeeOther(request.resource_url(request.context))


@view_config(context=WebhookContainer, name="redeliver", permission=Permission.ADMIN,
             request_method="POST", renderer="webhooks/admin_webhooks.jinja2")
def redeliver(request):
    try:
        row = services.redeliver(request.dbsession, request.POST.get("delivery", ""))
    except DomainError as exc:
        request.tm.doom()
        request.response.status_int = exc.status
        return _page(request, error=exc.detail)
    request.session.flash(f"Event {row.event} queued again as delivery {row.id}.", "success")
    return HTTPSeeOther(request.resource_url(request.context))


@view_config(context=WebhookNode, name="toggle", permission=Permission.ADMIN,
             request_method="POST")
def toggle_webhook(request):
    hook = request.context.webhook
    services.update_webhook(request.dbsession, hook, active=not hook.active)
    request.session.flash(f"Webhook {hook.id} {'enabled' if hook.active else 'disabled'}.",
                          "success")
    return HTTPSeeOther(request.resource_url(request.context.__parent__))


@view_config(context=WebhookNode, name="rotate", permission=Permission.ADMIN,
             request_method="POST")
def rotate_secret(request):
    """A new secret made by the server; the old one signs nothing from now on."""
    hook = request.context.webhook
    services.change_webhook(request.dbsession, hook, secret="")
    request.session.flash(f"Webhook {hook.id} has a new secret: give it to the receiver, "
                          "which refuses the events signed with it until then.", "warning")
    request.session.flash(hook.id, SHOW_SECRET)
    return HTTPSeeOther(request.resource_url(request.context.__parent__))


@view_config(context=WebhookNode, name="delete", permission=Permission.ADMIN,
             request_method="POST")
def delete_webhook(request):
    hook = request.context.webhook
    services.delete_webhook(request.dbsession, hook)
    request.session.flash(f"Webhook {hook.id} deleted.", "success")
    return HTTPSeeOther(request.resource_url(request.context.__parent__))
