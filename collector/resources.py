"""The traversal tree: the map of the application, every context and its ``__acl__``.

::

    Root                              /
     ├─ PlatformContainer             /platforms/
     │   └─ PlatformNode              /platforms/{name}/
     │       └─ PlatformTicketContainer   …/tickets/
     │           └─ TicketNode        /platforms/{name}/tickets/{number}/
     │               └─ TicketArchiveContainer   …/archives/
     │                   └─ ArchiveNode   …/archives/{id}/
     ├─ TicketContainer               /tickets/{number}   → the same TicketNode, under its platform
     ├─ ArchiveContainer              /archives/{id}      → the same ArchiveNode, under its ticket
     ├─ UploadContainer               /uploads/           tus resumable uploads (API only)
     │   └─ UploadNode                /uploads/{id}       upload: only the ticket that created it
     ├─ TokenContainer                /tokens/            personal API tokens
     │   └─ PersonalTokenNode         /tokens/{id}        view, edit: only the token's owner
     ├─ AccountNode                   /account/           the signed-in user's own settings
     └─ AdminContainer                /admin/             admin only
         ├─ UserContainer             /admin/users/
         │   └─ UserNode              /admin/users/{id}/
         └─ WebhookContainer          /admin/webhooks/    help-desk webhooks and deliveries
             └─ WebhookNode           /admin/webhooks/{id}/

A node that looks children up by name is a ``…Container``; one that stands for one thing
(a row, or the signed-in user's account) is a ``…Node``.

Every ACL is computed from the database at request time; the API routes traverse into
this same tree, so one ACL decides for the web pages and the API alike.
"""

from pyramid.authorization import ALL_PERMISSIONS, DENY_ALL, Allow

from collector.accounts import services as accounts
from collector.accounts import tokens
from collector.archives import services as archives
from collector.archives.uploads import tus
from collector.db import as_integer
from collector.errors import Forbidden, NotFound
from collector.security import Permission as P
from collector.tickets import services as tickets
from collector.webhooks import services as webhooks

STAFF_ON_PLATFORM = (P.VIEW, P.EDIT, P.DELETE, P.DOWNLOAD)


def hidden_from(request, context):
    """Whether ``context`` is a platform, ticket, archive or upload that the caller may not
    even view: it then answers exactly as one that does not exist (404), so nobody can
    learn which restricted tickets, archives or platforms exist by asking for them."""
    if not any(isinstance(node, (PlatformNode, UploadNode, PersonalTokenNode))
               for node in _lineage(context)):
        return False
    return not request.has_permission(P.VIEW, context)


def require(request, permission, context, refusal, missing):
    """The tree's ACL decides whether the caller may do ``permission`` on ``context``
    (a node the view looked up itself, e.g. a target platform or ticket): 403 with
    ``refusal`` when not, or 404 with ``missing`` — the answer for a name that does not
    exist — when the caller may not even see it."""
    if request.has_permission(permission, context):
        return
    if hidden_from(request, context):
        raise NotFound(missing)
    raise Forbidden(refusal)


def staff_data(context):
    """Whether ``context`` lies among the platforms, tickets, archives, users or webhooks
    (their containers included): where a name that does not exist must answer an
    anonymous caller as one that exists does (sign in first), or the answer tells which
    exist."""
    return any(isinstance(node, (PlatformContainer, TicketContainer, ArchiveContainer,
                                 AdminContainer)) for node in _lineage(context))


def _lineage(context):
    while context is not None:
        yield context
        context = getattr(context, "__parent__", None)


class Node:
    __name__ = ""
    __parent__ = None

    def __init__(self, request, name="", parent=None):
        self.request = request
        self.__name__ = name
        self.__parent__ = parent

    @property
    def dbsession(self):
        return self.request.dbsession


class Root(Node):
    __acl__ = [
        (Allow, "group:admin", ALL_PERMISSIONS),
        (Allow, "group:staff", P.VIEW),
    ]

    def __getitem__(self, name):
        children = {
            "platforms": PlatformContainer,
            "tickets": TicketContainer,
            "archives": ArchiveContainer,
            "uploads": UploadContainer,
            "tokens": TokenContainer,
            "account": AccountNode,
            "admin": AdminContainer,
        }
        return children[name](self.request, name, self)


def root_factory(request):
    return Root(request)


class PlatformContainer(Node):
    def __getitem__(self, name):
        platform = tickets.get_platform(self.dbsession, name)
        if platform is None:
            raise KeyError(name)
        return PlatformNode(self.request, platform, self)


class PlatformNode(Node):
    def __init__(self, request, platform, parent):
        super().__init__(request, platform.name, parent)
        self.platform = platform

    @property
    def __acl__(self):
        if not self.platform.restricted:
            return [(Allow, "group:staff", STAFF_ON_PLATFORM)]
        acl = [(Allow, "group:admin", ALL_PERMISSIONS)]
        acl += [(Allow, f"user:{m.user_id}", STAFF_ON_PLATFORM) for m in self.platform.members]
        # A restricted platform hides everything below it from everyone else.
        acl.append(DENY_ALL)
        return acl

    def __getitem__(self, name):
        if name != "tickets":
            raise KeyError(name)
        return PlatformTicketContainer(self.request, name, self)


class PlatformTicketContainer(Node):
    def __getitem__(self, number):
        ticket = tickets.get_ticket(self.dbsession, number)
        if ticket is None or ticket.platform_id != self.__parent__.platform.id:
            raise KeyError(number)
        return TicketNode(self.request, ticket, self)


class TicketNode(Node):
    def __init__(self, request, ticket, parent):
        super().__init__(request, str(ticket.number), parent)
        self.ticket = ticket

    @property
    def __acl__(self):
        # Only the holder of this ticket's valid upload token may upload to it.
        return [(Allow, f"ticket:{self.ticket.id}", P.UPLOAD)]

    def __getitem__(self, name):
        if name != "archives":
            raise KeyError(name)
        return TicketArchiveContainer(self.request, name, self)


class TicketArchiveContainer(Node):
    def __getitem__(self, archive_id):
        archive = archives.get_archive(self.dbsession, archive_id)
        if archive is None or archive.ticket_id != self.__parent__.ticket.id:
            raise KeyError(archive_id)
        return ArchiveNode(self.request, archive, self)


class ArchiveNode(Node):
    def __init__(self, request, archive, parent):
        super().__init__(request, str(archive.id), parent)
        self.archive = archive


def ticket_node(request, ticket):
    """The Ticket context with its canonical lineage (Root → platforms → platform)."""
    platform = platform_node(request, ticket.platform)
    return TicketNode(request, ticket, PlatformTicketContainer(request, "tickets", platform))


def platform_node(request, platform):
    """The Platform context with its canonical lineage (Root → platforms)."""
    return PlatformNode(request, platform, PlatformContainer(request, "platforms", Root(request)))


def archive_node(request, archive):
    ticket = ticket_node(request, archive.ticket)
    return ArchiveNode(request, archive, TicketArchiveContainer(request, "archives", ticket))


class TicketContainer(Node):
    """``/tickets/{number}``: a shortcut that lands on the canonical Ticket node."""

    def __getitem__(self, number):
        ticket = tickets.get_ticket(self.dbsession, number)
        if ticket is None:
            raise KeyError(number)
        return ticket_node(self.request, ticket)


class ArchiveContainer(Node):
    """``/archives/{id}``: a shortcut that lands on the canonical Archive node."""

    def __getitem__(self, archive_id):
        archive = archives.get_archive(self.dbsession, archive_id)
        if archive is None:
            raise KeyError(archive_id)
        return archive_node(self.request, archive)


class UploadContainer(Node):
    """``/uploads/``: tus uploads. Creating one needs a valid Upload-Token (checked by the
    view, which also reserves the attempt); staff get nothing here beyond the root's grants.
    """

    def __getitem__(self, upload_id):
        upload = tus.get_upload(self.dbsession, upload_id)
        if upload is None:
            raise KeyError(upload_id)
        return UploadNode(self.request, upload, self)


class UploadNode(Node):
    def __init__(self, request, upload, parent):
        super().__init__(request, upload.id, parent)
        self.upload = upload

    @property
    def __acl__(self):
        # Only the ticket whose token created the upload may continue, query or end it;
        # nobody else, staff included (an upload in progress is the customer's).
        return [(Allow, f"ticket:{self.upload.ticket_id}", P.UPLOAD), DENY_ALL]


class TokenContainer(Node):
    """Personal API tokens: staff list and make their own here (the list shows only the
    caller's); each token below is its owner's alone."""

    __acl__ = [(Allow, "group:staff", (P.VIEW, P.EDIT))]

    def __getitem__(self, token_id):
        token = tokens.find_personal_token(self.dbsession, token_id)
        if token is None:
            raise KeyError(token_id)
        return PersonalTokenNode(self.request, token, self)


class PersonalTokenNode(Node):
    """One live personal API token: its owner may see and revoke it, nobody else — not
    even an admin (who revokes any user's tokens through that user's node); to anybody
    else it answers as a token that does not exist (``hidden_from``)."""

    def __init__(self, request, token, parent):
        super().__init__(request, str(token.id), parent)
        self.token = token

    @property
    def __acl__(self):
        return [(Allow, f"user:{self.token.user_id}", (P.VIEW, P.EDIT)), DENY_ALL]


class AccountNode(Node):
    """``/account/``: every staff user may see and change their own account."""

    __acl__ = [(Allow, "group:staff", (P.VIEW, P.EDIT))]


class AdminContainer(Node):
    """``/admin/``: users and the like; admin only (and admin needs two-factor)."""

    __acl__ = [(Allow, "group:admin", ALL_PERMISSIONS), DENY_ALL]

    def __getitem__(self, name):
        children = {"users": UserContainer, "webhooks": WebhookContainer}
        return children[name](self.request, name, self)


class UserContainer(Node):
    def __getitem__(self, user_id):
        number = as_integer(user_id, minimum=1)
        user = accounts.get_user(self.dbsession, number) if number is not None else None
        if user is None:
            raise KeyError(user_id)
        return UserNode(self.request, user, self)


class UserNode(Node):
    def __init__(self, request, user, parent):
        super().__init__(request, str(user.id), parent)
        self.user = user


class WebhookContainer(Node):
    """``/admin/webhooks/``: every platform's webhooks; only the AdminContainer's ACL applies."""

    def __getitem__(self, webhook_id):
        hook = webhooks.get_webhook(self.dbsession, webhook_id)
        if hook is None:
            raise KeyError(webhook_id)
        return WebhookNode(self.request, hook, self)


class WebhookNode(Node):
    def __init__(self, request, webhook, parent):
        super().__init__(request, str(webhook.id), parent)
        self.webhook = webhook
