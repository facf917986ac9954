"""Staff pages for tickets and platforms: lists, the ticket page, its forms, platform admin.

Views hang on the resource tree by ``context=`` and ``name=``, so the ACL that guards the
API guards the pages. The rules are ``tickets.services``' commands, which the API calls too;
a form is checked by the same colander schema as an API body (``tickets.schemas``), so what
one accepts the other accepts. A refused form is shown again
with its message and a 4xx status, and its transaction is doomed: pyramid_tm commits a
returned response, and nothing half-done may be committed with it.
"""

import urllib.parse
from pathlib import Path

from pyramid.httpexceptions import HTTPSeeOther
from pyramid.response import Response
from pyramid.view import view_config

from collector.archives import services as archives
from collector.audit import services as audit
from collector.db import utcnow
from collector.errors import DomainError, Forbidden, NotFound
from collector.numbers import parse_natural
from collector.resources import (
    PlatformContainer,
    PlatformNode,
    Root,
    TicketContainer,
    TicketNode,
    platform_node,
    ticket_node,
)
from collector.security import Permission
from collector.tickets import commands, services
from collector.tickets.schemas import RETENTION, PlatformSchema, TicketSchema
from collector.validation import validate

PAGE_SIZE = 25
MAX_PAGE = 100_000
# The customer's console client, shipped inside the package (scripts/uploader.sh at the top
# of the source tree is a link to it).
UPLOADER = Path(__file__).resolve().parents[1] / "scripts" / "uploader.sh"
TICKET_FIELDS = ("number", "platform", "attempts", "lifetime_days", "note")


# --- helpers -----------------------------------------------------------------------------

def _redirect(request, url, message):
    """After a successful form: 303 to ``url``, with ``message`` shown there."""
    request.session.flash(message, "success")
    return HTTPSeeOther(url)


def _failed(request, exc, page):
    """Show the form again with the service's message; commit nothing of this request."""
    request.tm.doom()
    request.response.status_int = 403 if isinstance(exc, Forbidden) else 400
    fields = {e["name"]: e["description"] for e in getattr(exc, "errors", None) or []}
    return {**page, "error": exc.detail, "field_errors": fields}


def ticket_state(ticket, now=None):
    """``(key, label, colour)`` of a ticket's upload state; ``token_refusal`` decides."""
    refusal = services.token_refusal(ticket, now)
    return TICKET_STATES[refusal.reason if refusal else None]


TICKET_STATES = {None: ("open", "accepting uploads", "success"),
                 "ticket_resolved": ("resolved", "resolved", "secondary"),
                 "no_attempts": ("used-up", "no attempts left", "warning"),
                 "token_expired": ("expired", "expired", "warning")}


def _ticket_url(request, platform_name, number):
    return request.resource_url(request.root, "platforms", platform_name, "tickets",
                                str(number), "")


def _visible_platforms(request):
    rows, _ = services.list_platforms(request.dbsession, request.identity.user, 1000, 0)
    return rows


def _numbers(query):
    """``"12, 15 17"`` → ``[12, 15, 17]``; None when the query is not a list of numbers."""
    parts = query.replace(",", " ").split()
    numbers = [parse_natural(part, max_length=18) for part in parts]
    if not parts or len(parts) > 100 or None in numbers:
        return None
    return numbers


def _page_number(value):
    try:
        return min(max(int(value), 1), MAX_PAGE)
    except (TypeError, ValueError):
        return 1


# --- ticket lists ------------------------------------------------------------------------

@view_config(context=TicketContainer, name="", permission=Permission.VIEW,
             request_method="GET", renderer="tickets/list.jinja2")
def ticket_list(request):
    return _ticket_list(request, None)


@view_config(context=PlatformNode, name="", permission=Permission.VIEW,
             request_method="GET", renderer="tickets/list.jinja2")
def platform_ticket_list(request):
    return _ticket_list(request, request.context.platform)


def _ticket_list(request, platform):
    params, user = request.GET, request.identity.user
    query = params.get("q", "").strip()[:200]
    filters = {}
    numbers = _numbers(query)
    if numbers is not None:
        filters["number"] = numbers
    elif query:
        filters["search"] = query
    platform_name = platform.name if platform else params.get("platform", "")
    if platform_name:
        filters["platform"] = platform_name
    resolved = params.get("resolved", "")
    if resolved in {"true", "false"}:
        filters["resolved"] = resolved == "true"
    mine = params.get("mine") == "1"
    if mine:
        filters["user"] = user.username
    number = _page_number(params.get("page"))
    rows, total = services.list_ticket_rows(request.dbsession, user, filters, PAGE_SIZE,
                                            (number - 1) * PAGE_SIZE)
    last = max((total - 1) // PAGE_SIZE + 1, 1)

    def page_url(n):
        kept = [(k, v) for k, v in params.items() if k != "page"]
        return request.path_url + "?" + urllib.parse.urlencode(kept + [("page", str(n))])

    now = utcnow()
    return {
        "platform": platform,
        "platforms": [] if platform else _visible_platforms(request),
        "can_admin": platform is not None and bool(
            request.has_permission(Permission.ADMIN, request.context)),
        "rows": [(row, ticket_state(row, now), _ticket_url(request, row.platform, row.number))
                 for row in rows],
        "archive_counts": archives.count_by_ticket(request.dbsession, [r.id for r in rows]),
        "query": query, "platform_filter": platform_name, "resolved": resolved, "mine": mine,
        "total": total, "page": number, "last_page": last,
        "first_index": (number - 1) * PAGE_SIZE + 1,
        "prev_url": page_url(number - 1) if number > 1 else None,
        "next_url": page_url(number + 1) if number < last else None,
    }


# --- creating and editing tickets --------------------------------------------------------

def _ticket_form(request, ticket=None, form=None):
    if form is None:
        form = {"number": "", "platform": request.GET.get("platform", ""), "attempts": "",
                "lifetime_days": "", "note": ""}
        if ticket is not None:
            form.update(number=str(ticket.number), platform=ticket.platform.name,
                        attempts=str(ticket.attempts), note=ticket.note)
    settings = request.registry.settings
    return {"ticket": ticket, "form": form,
            "platforms": _visible_platforms(request), "error": None, "field_errors": {},
            "default_attempts": settings["ticket.attempts"],
            "default_lifetime": settings["ticket.lifetime_days"]}


def _posted_ticket(request):
    return {name: request.POST.get(name, "") for name in TICKET_FIELDS}


@view_config(context=TicketContainer, name="new", permission=Permission.VIEW,
             request_method="GET", renderer="tickets/form.jinja2")
def new_ticket_form(request):
    return _ticket_form(request)


@view_config(context=TicketContainer, name="new", permission=Permission.VIEW,
             request_method="POST", renderer="tickets/form.jinja2")
def create_ticket(request):
    form = _posted_ticket(request)
    page = _ticket_form(request, form=form)
    try:
        data = validate(TicketSchema(), form, "form")
        row = commands.open_ticket(request, **{name: data[name] for name in TICKET_FIELDS})
    except DomainError as exc:
        return _failed(request, exc, page)
    return _redirect(request, request.resource_url(ticket_node(request, row)),
                     f"Ticket {row.number} created.")


@view_config(context=TicketNode, name="edit", permission=Permission.EDIT,
             request_method="GET", renderer="tickets/form.jinja2")
def edit_ticket_form(request):
    return _ticket_form(request, request.context.ticket)


@view_config(context=TicketNode, name="edit", permission=Permission.EDIT,
             request_method="POST", renderer="tickets/form.jinja2")
def edit_ticket(request):
    ticket, form = request.context.ticket, _posted_ticket(request)
    page = _ticket_form(request, ticket, form)
    try:
        data = validate(TicketSchema(), form, "form")
        commands.change_ticket(request, ticket, **{name: data[name] for name in TICKET_FIELDS})
    except DomainError as exc:
        return _failed(request, exc, page)
    return _redirect(request, request.resource_url(ticket_node(request, ticket)),
                     f"Ticket {ticket.number} saved.")


# --- the ticket page and its actions ------------------------------------------------------

@view_config(context=TicketNode, name="", permission=Permission.VIEW, request_method="GET",
             renderer="tickets/ticket.jinja2")
def ticket_page(request):
    context, ticket = request.context, request.context.ticket
    base = request.application_url
    rows, total = archives.list_archives(request.dbsession, request.identity.user,
                                         {"ticket": [ticket.number]}, 1000, 0)
    return {
        "ticket": ticket, "state": ticket_state(ticket),
        "url": request.resource_url(context),
        "archives": rows, "archive_total": total,
        # The ticket's own history: every upload attempt (refused ones too) and change.
        "history": audit.ticket_history(request.dbsession, ticket),
        "upload_link": f"{base}/upload#token={ticket.token}",
        "uploader_command": f"curl -fsSLO {base}/uploader.sh && sh uploader.sh -u {base} "
                            f"-t {ticket.token} -f logs.tar.gz",
        "curl_command": f"curl -f -H 'Upload-Token: {ticket.token}' -F 'file=@logs.tar.gz' "
                        f"{base}/api/v1/archives/",
        "can_edit": bool(request.has_permission(Permission.EDIT, context)),
        "can_delete": bool(request.has_permission(Permission.DELETE, context))
        and not ticket.legal_hold,
        "can_hold": bool(request.has_permission(Permission.ADMIN, context)),
        "can_download": bool(request.has_permission(Permission.DOWNLOAD, context)),
    }


@view_config(context=TicketNode, name="resolve", permission=Permission.EDIT,
             request_method="POST")
def resolve_ticket(request):
    ticket = request.context.ticket
    # A checkbox: sent as "1" when on, absent when off.
    commands.resolve_ticket(request, ticket, resolved=request.POST.get("resolved") == "1")
    message = (f"Ticket {ticket.number} resolved: its token accepts no more uploads."
               if ticket.resolved else f"Ticket {ticket.number} reopened.")
    return _redirect(request, request.resource_url(request.context), message)


@view_config(context=TicketNode, name="hold", permission=Permission.ADMIN,
             request_method="POST")
def legal_hold(request):
    ticket = request.context.ticket
    hold = request.POST.get("hold") == "1"
    commands.hold_ticket(request, ticket, hold, request.POST.get("reason", "").strip())
    message = (f"Ticket {ticket.number} is under legal hold: no retention rule and no "
               "deletion touches its archives." if hold
               else f"Legal hold of ticket {ticket.number} lifted.")
    return _redirect(request, request.resource_url(request.context), message)


@view_config(context=TicketNode, name="rotate", permission=Permission.EDIT,
             request_method="POST")
def rotate_token(request):
    services.rotate_token(request.dbsession, request.context.ticket)
    return _redirect(request, request.resource_url(request.context),
                     "New upload token: the old one no longer works.")


@view_config(context=TicketNode, name="delete", permission=Permission.DELETE,
             request_method="GET", renderer="tickets/confirm.jinja2")
def delete_ticket_confirm(request):
    ticket = request.context.ticket
    return {"title": f"Delete ticket {ticket.number}?",
            "message": "The ticket and all its archives will be deleted. This cannot be "
                       "undone.",
            "action": request.resource_url(request.context, "delete"),
            "back": request.resource_url(request.context), "button": "Delete ticket"}


@view_config(context=TicketNode, name="delete", permission=Permission.DELETE,
             request_method="POST")
def delete_ticket(request):
    ticket = request.context.ticket
    platform_url = request.resource_url(request.context.__parent__.__parent__)
    number = ticket.number
    commands.delete_ticket(request, ticket)
    return _redirect(request, platform_url, f"Ticket {number} and its archives deleted.")


@view_config(context=Root, name="uploader.sh", request_method="GET")
def uploader_script(request):
    """The console client, for ``curl -fsSLO <base>/uploader.sh``; public."""
    try:
        body = UPLOADER.read_bytes()
    except FileNotFoundError:
        raise NotFound("uploader.sh is not part of this installation") from None
    return Response(body, content_type="text/x-shellscript", charset="utf-8",
                    cache_control="public, max-age=300")


# --- platforms ---------------------------------------------------------------------------

def _platform_list(request, form=None):
    rows = _visible_platforms(request)
    return {"platforms": rows,
            "counts": services.ticket_counts(request.dbsession, [r.id for r in rows]),
            "can_admin": bool(request.has_permission(Permission.ADMIN, request.context)),
            "form": form or {"name": "", "pretty_name": "", "restricted": False},
            "error": None, "field_errors": {}}


@view_config(context=PlatformContainer, name="", permission=Permission.VIEW,
             request_method="GET", renderer="tickets/platforms.jinja2")
def platform_list(request):
    return _platform_list(request)


@view_config(context=PlatformContainer, name="", permission=Permission.ADMIN,
             request_method="POST", renderer="tickets/platforms.jinja2")
def create_platform(request):
    post = request.POST
    form = {"name": post.get("name", "").strip(),
            "pretty_name": post.get("pretty_name", "").strip(),
            "restricted": post.get("restricted") == "1"}
    page = _platform_list(request, form)
    data = {"name": form["name"], "pretty_name": form["pretty_name"],
            "restricted": "1" if form["restricted"] else "0"}
    try:
        data = validate(PlatformSchema(), data, "form")
        row = services.new_platform(request.dbsession, data["name"], data["pretty_name"],
                                    data["restricted"])
    except DomainError as exc:
        return _failed(request, exc, page)
    target = request.resource_url(platform_node(request, row),
                                  "edit" if row.restricted else "")
    return _redirect(request, target, f"Platform {row.name} created.")


def _blank(value):
    return "" if value is None else str(value)


def _platform_page(request, form=None):
    platform = request.context.platform
    return {"platform": platform,
            "members": services.members_of(request.dbsession, platform),
            "form": form or {"pretty_name": platform.pretty_name,
                             "restricted": platform.restricted,
                             "retention_resolved_days": _blank(
                                 platform.retention_resolved_days),
                             "retention_max_days": _blank(platform.retention_max_days)},
            "ticket_count": services.ticket_counts(request.dbsession, [platform.id]).get(
                platform.id, (0, 0))[0],
            "url": request.resource_url(request.context),
            "error": None, "field_errors": {}}


@view_config(context=PlatformNode, name="edit", permission=Permission.ADMIN,
             request_method="GET", renderer="tickets/platform.jinja2")
def edit_platform_form(request):
    return _platform_page(request)


@view_config(context=PlatformNode, name="edit", permission=Permission.ADMIN,
             request_method="POST", renderer="tickets/platform.jinja2")
def edit_platform(request):
    platform, post = request.context.platform, request.POST
    form = {"pretty_name": post.get("pretty_name", "").strip(),
            "restricted": post.get("restricted") == "1",
            "retention_resolved_days": post.get("retention_resolved_days", "").strip(),
            "retention_max_days": post.get("retention_max_days", "").strip()}
    page = _platform_page(request, form)
    try:
        # The whole schema (the name is not editable here): an empty display name is an
        # error, not "unchanged"; an empty retention field follows the server's setting.
        data = validate(PlatformSchema(), {
            "name": platform.name, "pretty_name": form["pretty_name"],
            "restricted": "1" if form["restricted"] else "0",
            **{name: form[name] for name in RETENTION if form[name]}}, "form")
        services.change_platform(request.dbsession, platform, pretty_name=data["pretty_name"],
                                 restricted=data["restricted"],
                                 **{name: data[name] for name in RETENTION})
    except DomainError as exc:
        return _failed(request, exc, page)
    return _redirect(request, request.resource_url(request.context, "edit"),
                     f"Platform {platform.name} saved.")


def _member_change(request, add):
    platform = request.context.platform
    page = _platform_page(request)
    username = request.POST.get("username", "").strip()
    try:
        user = services.change_membership(request.dbsession, platform, username, add)
    except DomainError as exc:
        return _failed(request, exc, page)
    message = (f"{user.username} is now a member of {platform.name}." if add
               else f"{user.username} is no longer a member of {platform.name}.")
    return _redirect(request, request.resource_url(request.context, "edit"), message)


@view_config(context=PlatformNode, name="add-member", permission=Permission.ADMIN,
             request_method="POST", renderer="tickets/platform.jinja2")
def add_member(request):
    return _member_change(request, add=True)


@view_config(context=PlatformNode, name="remove-member", permission=Permission.ADMIN,
             request_method="POST", renderer="tickets/platform.jinja2")
def remove_member(request):
    return _member_change(request, add=False)


@view_config(context=PlatformNode, name="delete", permission=Permission.ADMIN,
             request_method="GET", renderer="tickets/confirm.jinja2")
def delete_platform_confirm(request):
    platform = request.context.platform
    return {"title": f"Delete platform {platform.name}?",
            "message": "Only a platform without tickets can be deleted.",
            "action": request.resource_url(request.context, "delete"),
            "back": request.resource_url(request.context, "edit"), "button": "Delete platform"}


@view_config(context=PlatformNode, name="delete", permission=Permission.ADMIN,
             request_method="POST", renderer="tickets/platform.jinja2")
def delete_platform(request):
    platform = request.context.platform
    page = _platform_page(request)
    try:
        services.delete_platform(request.dbsession, platform)
    except DomainError as exc:
        return _failed(request, exc, page)
    return _redirect(request, request.resource_url(request.context.__parent__),
                     f"Platform {platform.name} deleted.")
