"""Ticket commands: what a caller asks of tickets, where the tree's ACL decides about a
node the command looks up itself (the platform a ticket goes to or moves to, a legal hold).

The API's services and the staff pages parse what they are sent (``tickets.schemas``),
call one of these, and render or serialise the answer. The rules themselves are in
``tickets.services``, which knows nothing of requests; these sit above the tree
(``collector.resources``), which looks its children up through those services.
"""

from collector.archives.uploads import tus
from collector.errors import Forbidden
from collector.resources import platform_node, require, ticket_node
from collector.security import Permission
from collector.tickets import services


def editable_platform(request, name):
    """The platform named ``name`` if the caller may put tickets in it (its ACL decides):
    404 when it does not exist or the caller may not see it, else 403 when they may not."""
    platform = services.require_platform(request.dbsession, name)
    require(request, Permission.EDIT, platform_node(request, platform),
            f"you may not add tickets to platform {name}",
            missing=f"platform {name} does not exist")
    return platform


def _require_hold_right(request, node):
    """Legal holds are the admins' (the tree's ACL: only they have ``admin`` there)."""
    if not request.has_permission(Permission.ADMIN, node):
        raise Forbidden("only an admin may place or lift a legal hold")


def open_ticket(request, platform, number, attempts=None, note="", expires_at=None,
                lifetime_days=None, resolved=False, legal_hold=None):
    """A new ticket of the caller's in the platform named ``platform``; resolved and under
    legal hold from the start when asked (the hold: admins only)."""
    target = editable_platform(request, platform)
    if legal_hold:
        _require_hold_right(request, platform_node(request, target))
    dbsession = request.dbsession
    ticket = services.create_ticket(dbsession, request.registry.settings,
                                    request.identity.user, target, number, attempts=attempts,
                                    note=note, expires_at=expires_at,
                                    lifetime_days=lifetime_days)
    if resolved:
        _update(request, ticket, resolved=True)
    if legal_hold:
        services.set_legal_hold(dbsession, ticket, True)
    return ticket


def change_ticket(request, ticket, **fields):
    """Change the given fields of a ticket (None: unchanged). ``platform`` is a name the
    caller must be allowed to move it to, ``lifetime_days`` a new expiry from now, and a
    changed ``legal_hold`` needs an admin."""
    hold = fields.pop("legal_hold", None)
    if hold is not None and hold != ticket.legal_hold:
        hold_ticket(request, ticket, hold)
    if fields.get("platform") is not None:
        fields["platform"] = editable_platform(request, fields["platform"])
    lifetime = fields.pop("lifetime_days", None)
    if lifetime:
        fields["expires_at"] = services.expiry_after(lifetime)
    fields = {key: value for key, value in fields.items() if value is not None}
    return _update(request, ticket, **fields)


def resolve_ticket(request, ticket, resolved=True):
    """Resolve (or reopen) a ticket: its token accepts no more uploads, and what it left
    unfinished goes."""
    return _update(request, ticket, resolved=resolved)


def hold_ticket(request, ticket, hold, reason=""):
    """Place or lift the legal hold, as an admin (403 for anybody else). Returns whether it
    changed."""
    _require_hold_right(request, ticket_node(request, ticket))
    return services.set_legal_hold(request.dbsession, ticket, hold, reason)


def delete_ticket(request, ticket):
    """Delete the ticket, its archives and what its token left unfinished (their files
    after the commit); never a ticket under legal hold (423)."""
    services.check_not_held(ticket)
    tus.remove_unfinished(request.dbsession, request.storage, ticket, "ticket deleted",
                          give_back=False)
    services.delete_ticket(request.dbsession, request.storage, ticket)


def _update(request, ticket, **fields):
    """``services.update_ticket``; a ticket being resolved loses its unfinished uploads
    first (rows now, bytes after the commit): a chunk being written holds its upload's row
    and then asks for the ticket's, so the rows are taken in that order here too."""
    if fields.get("resolved") and not ticket.resolved:
        tus.remove_unfinished(request.dbsession, request.storage, ticket, "ticket resolved")
    return services.update_ticket(request.dbsession, ticket, **fields)
