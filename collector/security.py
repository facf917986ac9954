"""Who is asking, and what they may do.

One ``SecurityPolicy`` asks, in order, the bearer-token, session and upload-token helpers
who is calling, caches the answer for the request, and lets the tree's ACLs decide. When an
ACL allows but two-factor is missing, the answer is ``MfaRequired`` (a ``Denied`` with a
reason), which the forbidden view turns into a clear 403.
"""

import dataclasses
import enum

from pyramid.authorization import ACLHelper, Authenticated, Everyone
from pyramid.csrf import SessionCSRFStoragePolicy
from pyramid.security import Denied
from pyramid.session import SignedCookieSessionFactory

from collector.accounts import services as accounts
from collector.accounts import tokens
from collector.errors import json_error
from collector.tickets import services as tickets


class Permission(enum.StrEnum):
    VIEW = "view"
    EDIT = "edit"
    DELETE = "delete"
    DOWNLOAD = "download"
    UPLOAD = "upload"
    ADMIN = "admin"


# Archive bytes and administration are granted only to a principal that passed TOTP.
NEEDS_MFA = frozenset({Permission.DOWNLOAD, Permission.ADMIN})


class MfaRequired(Denied):
    reason = "two-factor authentication required"


@dataclasses.dataclass(frozen=True)
class Identity:
    """A staff user (by bearer token or session), an upload-token holder, or both."""

    via: str  # "bearer" | "session" | "upload-token"
    user: object = None
    ticket: object = None
    token: object = None
    mfa: bool = False

    @property
    def principals(self):
        principals = []
        if self.user is not None:
            principals += ["group:staff", f"user:{self.user.id}"]
            if self.user.is_admin:
                principals.append("group:admin")
            if self.mfa:
                principals.append("mfa")
        if self.ticket is not None:
            principals.append(f"ticket:{self.ticket.id}")
        return principals


def bearer_identity(request):
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() not in {"bearer", "token"} or not secret.strip():
        return None
    token = tokens.find_valid_token(request.dbsession, secret.strip(),
                                      kinds={"access", "personal"})
    if token is None or not token.user.is_active:
        return None
    tokens.note_token_use(token)
    return Identity("bearer", user=token.user, token=token, mfa=token.mfa)


def session_identity(request):
    # Reading request.session for every API call would set no cookie, but costs a parse.
    if "session" not in request.cookies:
        return None
    user_id = request.session.get("user_id")
    if user_id is None:
        return None
    user = accounts.get_user(request.dbsession, user_id)
    if user is None or not user.is_active:
        return None
    # A password change or a two-factor reset ends every session made before it.
    if request.session.get("stamp") != accounts.session_stamp(user):
        return None
    return Identity("session", user=user, mfa=bool(request.session.get("mfa")))


def ended_session(request):
    """Whether the request brings a session cookie that no longer signs anybody in: one
    that timed out or does not verify (Pyramid starts a new, empty session then), or one
    whose user's password, two-factor setup or status changed since. Only the caller's own
    cookie decides, never the address asked for, so it tells nothing about that page."""
    if "session" not in request.cookies or request.identity is not None:
        return False
    session = request.session
    return session.new or session.get("user_id") is not None


def upload_token_identity(request):
    token = request.headers.get("Upload-Token")
    if not token:
        return None
    ticket = tickets.ticket_for_valid_token(request.dbsession, token)
    if ticket is None:
        return None
    return Identity("upload-token", ticket=ticket)


def _continuing_ticket(request):
    """The ticket of an Upload-Token that may no longer start an upload (its attempts are
    spent) but may still continue one it started: an upload holds the attempt it reserved.
    The holder is nobody for the pages (no identity); for the tree's ACL it is still
    ``ticket:{id}``, so the upload's own node decides. Asked once per request."""
    if "_collector_continuing" not in request.__dict__:
        token = request.headers.get("Upload-Token")
        request.__dict__["_collector_continuing"] = tickets.ticket_for_valid_token(
            request.dbsession, token, need_attempt=False) if token else None
    return request.__dict__["_collector_continuing"]


class SecurityPolicy:
    def __init__(self):
        self.acl = ACLHelper()

    def identity(self, request):
        # Pyramid asks again for every permission check and authenticated_userid: keep
        # the answer on the request (a retried request is a new object and asks anew).
        if "_collector_identity" not in request.__dict__:
            request.__dict__["_collector_identity"] = self._identify(request)
        return request.__dict__["_collector_identity"]

    def _identify(self, request):
        # A signed-in user who also sends an Upload-Token (staff trying the customer
        # page) gets both.
        identity = bearer_identity(request) or session_identity(request)
        uploader = upload_token_identity(request)
        if identity is None:
            return uploader
        if uploader is not None:
            identity = dataclasses.replace(identity, ticket=uploader.ticket)
        return identity

    def authenticated_userid(self, request):
        identity = request.identity
        if identity is None or identity.user is None:
            return None
        return str(identity.user.id)

    def effective_principals(self, request):
        identity = request.identity
        principals = [Everyone]
        if identity is not None:
            principals.append(Authenticated)
            principals.extend(identity.principals)
        if identity is None or identity.ticket is None:
            continuing = _continuing_ticket(request)
            if continuing is not None:
                principals.append(f"ticket:{continuing.id}")
        return principals

    def permits(self, request, context, permission):
        principals = self.effective_principals(request)
        result = self.acl.permits(context, principals, permission)
        if result and permission in NEEDS_MFA and "mfa" not in principals:
            return MfaRequired(f"{permission} needs a two-factor verified principal")
        return result

    def remember(self, request, userid, mfa=False, **kw):
        request.session.invalidate()
        request.session["user_id"] = int(userid)
        request.session["mfa"] = bool(mfa)
        request.session["stamp"] = accounts.session_stamp(
            accounts.get_user(request.dbsession, int(userid)))
        # The identity may have been asked already in this request (as nobody).
        request.__dict__.pop("_collector_identity", None)
        return []

    def forget(self, request, **kw):
        request.session.invalidate()
        return []


def _csrf_applies(request):
    # Every form post of the web pages carries a CSRF token (sign-in included: the login
    # page starts the session that holds it). On the API only cookie-authenticated writes
    # need one: a valid bearer or upload token travels in a header that a foreign page
    # cannot set. The exemption is for a header that authenticates the request, not for
    # the header's presence: with a junk Authorization or Upload-Token the session cookie
    # is what signs the request in, so it needs the token like any cookie request.
    if not request.path_info.startswith("/api/"):
        return True
    identity = request.identity
    return identity is not None and identity.via == "session" and identity.ticket is None


def session_factory(settings):
    """Signed-cookie sessions; ``Secure`` by SESSION_COOKIE_SECURE (``auto``: over https)."""
    options = dict(cookie_name="session", httponly=True, samesite="Lax",
                   timeout=12 * 3600, reissue_time=600)
    secure = SignedCookieSessionFactory(settings["secret_key"], secure=True, **options)
    plain = SignedCookieSessionFactory(settings["secret_key"], secure=False, **options)
    if settings["session.secure"] != "auto":
        return secure if settings["session.secure"] else plain

    def factory(request):
        return (secure if request.scheme == "https" else plain)(request)

    return factory


def includeme(config):
    settings = config.get_settings()
    config.set_session_factory(session_factory(settings))
    config.set_csrf_storage_policy(SessionCSRFStoragePolicy())
    config.set_default_csrf_options(require_csrf=True, callback=_csrf_applies)
    config.set_security_policy(SecurityPolicy())
    config.add_tween("collector.security.allowed_hosts_tween_factory")


# The liveness and readiness probes (collector/probes.py): answered whatever the Host, as
# orchestrators ask by address; their answers hold no link and no data.
PROBE_PATHS = ("/livez", "/readyz")


def allowed_hosts_tween_factory(handler, registry):
    """Refuse requests whose Host is not in ALLOWED_HOSTS (DNS-rebinding, host poisoning);
    the probes excepted."""
    allowed = {host.lower() for host in registry.settings["allowed_hosts"]}
    if "*" in allowed:
        return handler

    def tween(request):
        host = (request.host or "").rsplit(":", 1)[0].strip("[]").lower()
        if host not in allowed and request.path_info not in PROBE_PATHS:
            return json_error(request, 400, f"host {host!r} is not in ALLOWED_HOSTS")
        return handler(request)

    return tween
