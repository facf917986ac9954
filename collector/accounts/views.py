"""Sign-in pages (password, then TOTP or a recovery code, or enrolment), first-run setup,
the account page and the administration of users.

A password alone never signs anybody in: it leaves ``pending_user_id`` in the session,
which the security policy ignores. Only the second factor (or a completed enrolment)
calls ``remember(..., mfa=True)``. Failed attempts are recorded in the request's
transaction, so those answers are rendered with a 4xx status, never raised (pyramid_tm
commits a returned response and aborts a raised one).
"""

import re
import time
import urllib.parse

from pyramid.httpexceptions import HTTPNotFound, HTTPSeeOther
from pyramid.security import forget, remember
from pyramid.view import view_config

from collector.accounts import commands, services, tokens
from collector.accounts.schemas import (
    TOKEN_LIFETIME_MAX_DAYS,
    TOKEN_NAME_MAX,
    PersonalTokenSchema,
)
from collector.audit.services import record
from collector.db import utcnow
from collector.errors import DomainError, TooManyRequests
from collector.resources import AccountNode, AdminContainer, Root, UserContainer, UserNode
from collector.security import Permission, ended_session
from collector.validation import ValidationFailed, validate

PENDING_USER = "pending_user_id"
PENDING_SINCE = "pending_since"
PENDING_NEXT = "pending_next"
ENROL_SECRET = "enrol_secret"
# The time between a correct password and the second factor (or enrolment).
PENDING_LIFETIME = 5 * 60
DEFAULT_NEXT = "/tickets/"
# Longer is no page of ours (and would bloat the session cookie).
MAX_NEXT = 2048


def safe_next(value):
    """A local path to go to after sign-in; anything else goes to the ticket list.

    Accepted: printable ASCII (no space) starting with exactly one ``/``, with no backslash
    anywhere. Browsers read ``//host`` and ``/\\host`` as another site, and drop tabs and
    newlines from URLs (``/<tab>/host`` is ``//host``), so none of those can pass; schemes
    (``javascript:``, ``https:``) cannot start with ``/``; nor can an encoded ``//``. The
    answer is always prefixed by the application's own URL as well.
    """
    if not isinstance(value, str) or not 0 < len(value) <= MAX_NEXT:
        return DEFAULT_NEXT
    if value[0] != "/" or value[1:2] == "/" or "\\" in value:
        return DEFAULT_NEXT
    if not all("!" <= ch <= "~" for ch in value):
        return DEFAULT_NEXT
    # A proxy or a later redirect may decode it once: ``/%2F%2Fhost`` would become ``//host``.
    if urllib.parse.unquote(value)[1:2] in ("/", "\\"):
        return DEFAULT_NEXT
    return value


def _address(request):
    # remote_addr, not client_addr: X-Forwarded-For is client-set (see api/v1/auth.py).
    return request.remote_addr or ""


def _redirect(request, path):
    return HTTPSeeOther(request.application_url + path)


def _private(request):
    # Sign-in pages and shown-once secrets stay out of every cache.
    request.response.cache_control = "no-store"


def _status(request, exc):
    request.response.status_int = exc.status
    for name, value in exc.headers.items():
        request.response.headers[name.replace("_", "-")] = str(value)
    return exc.detail


def _start_pending(request, user, next_path):
    request.session.invalidate()
    request.session[PENDING_USER] = user.id
    request.session[PENDING_SINCE] = int(time.time())
    request.session[PENDING_NEXT] = safe_next(next_path)


def pending_user(request):
    """The user who gave the right password in the last five minutes, or None."""
    if "session" not in request.cookies:
        return None
    session = request.session
    user_id, since = session.get(PENDING_USER), session.get(PENDING_SINCE, 0)
    if user_id is None:
        return None
    if time.time() - since > PENDING_LIFETIME:
        for key in (PENDING_USER, PENDING_SINCE, PENDING_NEXT, ENROL_SECRET):
            session.pop(key, None)
        return None
    user = services.get_user(request.dbsession, user_id)
    return user if user is not None and user.is_active else None


def _sign_in(request, user):
    """The second factor passed: a real session (``user_id`` + ``mfa``), then onwards."""
    next_path = safe_next(request.session.get(PENDING_NEXT))
    user.last_login = utcnow()
    record(request, "signin.success", actor=user, detail={"via": "web"})
    headers = remember(request, user.id, mfa=True)
    return next_path, headers


def _signed_in(request):
    identity = request.identity
    return identity is not None and identity.via == "session" and identity.mfa


def _arrival_notice(request):
    """Why a visitor is on the sign-in page, when it can be told: a page sent them (the
    redirect of an anonymous request carries ``next``), or their session ended. The same
    words for every page asked for: a missing ticket answers as an existing one."""
    ended = ended_session(request)
    if "next" in request.GET:
        return ("Your session has ended: sign in again to see that page." if ended
                else "Sign in to see that page.")
    return "Your session has ended: please sign in again." if ended else None


def _expired(request):
    if _signed_in(request):  # e.g. the back button after signing in
        return _redirect(request, DEFAULT_NEXT)
    request.session.flash("Your sign-in has expired; please enter your password again.",
                          "warning")
    return _redirect(request, "/login")


# --- sign-in -----------------------------------------------------------------------------

@view_config(context=Root, name="login", request_method="GET",
             renderer="accounts/login.jinja2")
def login_form(request):
    next_path = safe_next(request.params.get("next"))
    if _signed_in(request):
        return _redirect(request, next_path)
    if not services.any_user_exists(request.dbsession):
        return _redirect(request, "/setup")
    _private(request)
    return {"nav": None, "next": next_path, "username": "", "error": None,
            "notice": _arrival_notice(request)}


@view_config(context=Root, name="login", request_method="POST",
             renderer="accounts/login.jinja2")
def login(request):
    _private(request)
    username = request.POST.get("username", "").strip()[:150]
    password = request.POST.get("password", "")
    next_path = safe_next(request.POST.get("next"))
    page = {"nav": None, "next": next_path, "username": username, "notice": None}
    dbsession, address = request.dbsession, _address(request)
    try:
        attempt = services.begin_attempt(dbsession, username, address)
    except TooManyRequests as exc:
        return {**page, "error": _status(request, exc)}
    user = services.get_user_by_name(dbsession, username)
    if not services.check_password(user, password) or not user.is_active:
        attempt.failed()
        request.response.status_int = 401
        return {**page, "error": "Wrong username or password."}
    attempt.succeeded()
    _start_pending(request, user, next_path)
    return _redirect(request, "/verify" if user.totp_enrolled else "/enrol")


@view_config(context=Root, name="verify", request_method="GET",
             renderer="accounts/verify.jinja2")
def verify_form(request):
    user = pending_user(request)
    if user is None:
        return _expired(request)
    if not user.totp_enrolled:
        return _redirect(request, "/enrol")
    _private(request)
    return {"nav": None, "error": None}


@view_config(context=Root, name="verify", request_method="POST",
             renderer="accounts/verify.jinja2")
def verify(request):
    user = pending_user(request)
    if user is None:
        return _expired(request)
    if not user.totp_enrolled:
        return _redirect(request, "/enrol")
    _private(request)
    dbsession, address = request.dbsession, _address(request)
    try:
        attempt = services.begin_attempt(dbsession, user.username, address)
    except TooManyRequests as exc:
        return {"nav": None, "error": _status(request, exc)}
    code = request.POST.get("code") or request.POST.get("recovery_code") or ""
    kind = services.verify_second_factor(dbsession, user, code)
    if kind is None:
        attempt.failed()
        request.response.status_int = 401
        return {"nav": None, "error": "That code is wrong or was already used."}
    attempt.succeeded()
    next_path, headers = _sign_in(request, user)
    if kind == "recovery":
        left = services.count_recovery_codes(dbsession, user)
        request.session.flash(f"You signed in with a recovery code; {left} left. "
                              "Generate new ones on your account page if you are short.",
                              "warning")
    return HTTPSeeOther(request.application_url + next_path, headers=headers)


@view_config(context=Root, name="enrol", request_method="GET",
             renderer="accounts/enrol.jinja2")
def enrol_form(request):
    user = pending_user(request)
    if user is None:
        return _expired(request)
    if user.totp_enrolled:
        return _redirect(request, "/verify")
    _private(request)
    return _enrol_page(request, user, None)


def _enrol_page(request, user, error):
    # The candidate secret lives in the session until a code confirms it.
    secret = request.session.get(ENROL_SECRET)
    if secret is None:
        secret = request.session[ENROL_SECRET] = services.new_totp_secret()
    uri = services.totp_uri(user.username, secret)
    return {"nav": None, "secret": secret, "uri": uri,
            "qr_svg": services.qr_svg(uri), "error": error}


@view_config(context=Root, name="enrol", request_method="POST",
             renderer="accounts/enrol.jinja2")
def enrol(request):
    user = pending_user(request)
    if user is None:
        return _expired(request)
    if user.totp_enrolled:
        return _redirect(request, "/verify")
    _private(request)
    secret = request.session.get(ENROL_SECRET)
    if secret is None:
        return _redirect(request, "/enrol")
    try:
        codes = services.enrol_totp(request.dbsession, user, secret,
                                    request.POST.get("code", ""))
    except DomainError as exc:
        return _enrol_page(request, user, _status(request, exc))
    next_path, headers = _sign_in(request, user)
    request.response.headers.extend(headers)
    # Shown here, once, and never stored in clear: no redirect (and no cookie copy).
    return render_recovery_codes(request, codes, next_path, user, enrolled=True)


def recovery_file_name(username):
    """The name the recovery codes are saved under. A username may hold any character;
    the name keeps letters, digits, ``.``, ``_`` and ``-`` (the rest become ``_``)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", username).strip(".") or "user"
    return f"logs-collector-recovery-codes-{safe}.txt"


def render_recovery_codes(request, codes, next_path, user, enrolled=False):
    from pyramid.renderers import render_to_response

    _private(request)
    return render_to_response("accounts/recovery_codes.jinja2",
                              {"nav": "account", "codes": codes, "next": next_path,
                               "enrolled": enrolled, "username": user.username,
                               "file_name": recovery_file_name(user.username)},
                              request=request, response=request.response)


@view_config(context=Root, name="logout", request_method="POST")
def logout(request):
    user = request.staff_user
    if user is not None:
        services.end_sessions(request.dbsession, user.id)
    headers = forget(request)
    request.session.flash("You are signed out.", "success")
    return HTTPSeeOther(request.application_url + "/login", headers=headers)


# --- first run ---------------------------------------------------------------------------

@view_config(context=Root, name="setup", request_method="GET",
             renderer="accounts/setup.jinja2")
def setup_form(request):
    if services.any_user_exists(request.dbsession):
        raise HTTPNotFound()
    _private(request)
    return {"nav": None, "username": "", "email": "", "error": None}


@view_config(context=Root, name="setup", request_method="POST",
             renderer="accounts/setup.jinja2")
def setup(request):
    if services.any_user_exists(request.dbsession):
        raise HTTPNotFound()
    _private(request)
    post = request.POST
    page = {"nav": None, "username": post.get("username", "").strip(),
            "email": post.get("email", "").strip()}
    try:
        if post.get("password", "") != post.get("password_confirm", ""):
            raise DomainError("the two passwords differ")
        user, claimed = services.create_first_admin(
            request.dbsession, request.registry.settings["data_dir"],
            post.get("setup_code", ""), post.get("username"),
            post.get("password", ""), post.get("email", ""), _address(request))
    except DomainError as exc:
        return {**page, "error": _status(request, exc)}

    # The code dies with the commit that used it; a failed commit or an abort gives it back.
    current = request.tm.get()
    current.addAfterCommitHook(services.release_setup_code, args=(claimed,))
    current.addAfterAbortHook(services.release_setup_code, args=(claimed, False))
    _start_pending(request, user, DEFAULT_NEXT)
    return _redirect(request, "/enrol")


# --- the account page --------------------------------------------------------------------

def _account_page(request, **extra):
    user = request.identity.user
    dbsession = request.dbsession
    return {"nav": "account", "user": user,
            "recovery_left": services.count_recovery_codes(dbsession, user),
            "tokens": tokens.list_personal_tokens(dbsession, user),
            "errors": {}, "new_token": None, **extra}


@view_config(context=AccountNode, name="", request_method="GET", permission=Permission.VIEW,
             renderer="accounts/account.jinja2")
def account(request):
    return _account_page(request)


@view_config(context=AccountNode, name="password", request_method="POST",
             permission=Permission.EDIT, renderer="accounts/account.jinja2")
def change_password(request):
    post = request.POST
    try:
        if post.get("new_password", "") != post.get("new_password_confirm", ""):
            raise DomainError("the two new passwords differ")
        keep = _keep_personal_tokens(request)
        revoked = services.change_password(request.dbsession, request.identity.user,
                                           post.get("current_password", ""),
                                           post.get("new_password", ""), _address(request),
                                           keep_personal=keep)
    except DomainError as exc:
        return _account_page(request, errors={"password": _status(request, exc)})
    # The new password ends every other session; this one is made anew.
    headers = []
    if request.identity.via == "session":
        headers = remember(request, request.identity.user.id, mfa=request.identity.mfa)
    request.session.flash("Your password is changed. Other sessions are signed out; "
                          f"{_tokens_revoked(revoked, keep, 'your')}", "success")
    response = _redirect(request, "/account/")
    response.headers.extend(headers)
    return response


@view_config(context=AccountNode, name="recovery-codes", request_method="POST",
             permission=Permission.EDIT)
def regenerate_recovery_codes(request):
    user = request.identity.user
    codes = services.generate_recovery_codes(request.dbsession, user)
    return render_recovery_codes(request, codes, "/account/", user)


# The token form's one message per field; the limits are the schema's, as for the API.
TOKEN_FORM_ERRORS = {
    "name": f"a token needs a name of 1 to {TOKEN_NAME_MAX} characters",
    "lifetime_days": f"the lifetime is a number of days from 1 to {TOKEN_LIFETIME_MAX_DAYS}",
}


def _personal_token(form):
    """The token form checked by the API's schema, refused in the page's own words."""
    try:
        return validate(PersonalTokenSchema(), form, "form")
    except ValidationFailed as exc:
        raise DomainError(TOKEN_FORM_ERRORS[exc.errors[0]["name"]]) from None


@view_config(context=AccountNode, name="tokens", request_method="POST",
             permission=Permission.EDIT, renderer="accounts/account.jinja2")
def create_token(request):
    identity = request.identity
    form = {"name": request.POST.get("name", "").strip(),
            "lifetime_days": request.POST.get("lifetime_days", "").strip()}
    try:
        data = _personal_token(form)
        row, secret = tokens.create_personal_token(
            request.dbsession, identity.user, data["name"], identity.mfa,
            data["lifetime_days"])
    except DomainError as exc:
        return _account_page(request, errors={"token": _status(request, exc)})
    _private(request)
    # The secret is shown in this answer only: rendered, not redirected.
    return _account_page(request, new_token={"row": row, "secret": secret})


@view_config(context=AccountNode, name="revoke-token", request_method="POST",
             permission=Permission.EDIT, renderer="accounts/account.jinja2")
def revoke_token(request):
    try:
        token = commands.own_personal_token(request, request.POST.get("token_id"))
    except DomainError as exc:
        return _account_page(request, errors={"tokens": _status(request, exc)})
    tokens.revoke(request.dbsession, token)
    request.session.flash(f"Token {token.name} is revoked.", "success")
    return _redirect(request, "/account/")


# --- administration of users -------------------------------------------------------------

@view_config(context=AdminContainer, name="", request_method="GET", permission=Permission.ADMIN)
def admin_home(request):
    return _redirect(request, "/admin/users/")


def _users_page(request, **extra):
    return {"nav": "admin", "users": services.list_users(request.dbsession),
            "lockouts": services.lockouts(request.dbsession),
            "form": {"username": "", "email": "", "is_admin": False}, "error": None, **extra}


@view_config(context=UserContainer, name="", request_method="GET",
             permission=Permission.ADMIN, renderer="accounts/admin_users.jinja2")
def users(request):
    return _users_page(request)


@view_config(context=UserContainer, name="", request_method="POST",
             permission=Permission.ADMIN, renderer="accounts/admin_users.jinja2")
def create_user(request):
    post = request.POST
    form = {"username": post.get("username", "").strip(), "email": post.get("email", ""),
            "is_admin": post.get("is_admin") == "1"}
    try:
        user = services.create_user(request.dbsession, form["username"],
                                    post.get("password", ""), is_admin=form["is_admin"],
                                    email=form["email"], totp=False)
    except DomainError as exc:
        return _users_page(request, form=form, error=_status(request, exc))
    request.session.flash(f"User {user.username} is created; they set up two-factor "
                          "authentication at their first sign-in.", "success")
    return _redirect(request, f"/admin/users/{user.id}/")


def _keep_personal_tokens(request):
    """The "keep personal API tokens" box: unticked (and absent) means revoke them too."""
    return request.POST.get("keep_personal_tokens") == "1"


def _tokens_revoked(count, keep, whose):
    kept = f" {whose.capitalize()} personal API tokens are kept." if keep else ""
    return f"{count} API token{'' if count == 1 else 's'} revoked.{kept}"


def _user_page(request, error=None):
    user = request.context.user
    dbsession = request.dbsession
    # Not "user": the layout's own "user" (who is signed in) would shadow it.
    return {"nav": "admin", "target": user, "is_self": user.id == request.identity.user.id,
            "recovery_left": services.count_recovery_codes(dbsession, user),
            "tokens": tokens.list_user_tokens(dbsession, user), "error": error}


@view_config(context=UserNode, name="", request_method="GET", permission=Permission.ADMIN,
             renderer="accounts/admin_user.jinja2")
def user_detail(request):
    return _user_page(request)


def _user_action(request, action, message, revokes=False):
    """Run ``action(user)`` (a service); with ``revokes``, its answer is the number of API
    tokens it revoked, which the message reports."""
    user = request.context.user
    try:
        revoked = action(user)
    except DomainError as exc:
        return _user_page(request, _status(request, exc))
    message = message.format(user=user.username)
    if revokes:
        message += " " + _tokens_revoked(revoked, _keep_personal_tokens(request), "their")
    request.session.flash(message, "success")
    return _redirect(request, f"/admin/users/{user.id}/")


@view_config(context=UserNode, name="active", request_method="POST",
             permission=Permission.ADMIN, renderer="accounts/admin_user.jinja2")
def set_active(request):
    active, keep = request.POST.get("active") == "1", _keep_personal_tokens(request)
    return _user_action(request, lambda user: services.set_active(
        request.dbsession, user, active, keep_personal=keep),
        "{user} is " + ("enabled." if active else "disabled."), revokes=not active)


@view_config(context=UserNode, name="admin", request_method="POST",
             permission=Permission.ADMIN, renderer="accounts/admin_user.jinja2")
def set_admin(request):
    is_admin = request.POST.get("is_admin") == "1"
    return _user_action(request, lambda user: services.set_admin(request.dbsession, user,
                                                                 is_admin),
                        "{user} is " + ("now an admin." if is_admin else "no longer an admin."))


@view_config(context=UserNode, name="reset-2fa", request_method="POST",
             permission=Permission.ADMIN, renderer="accounts/admin_user.jinja2")
def reset_2fa(request):
    keep = _keep_personal_tokens(request)
    return _user_action(request, lambda user: services.reset_totp(request.dbsession, user,
                                                                  keep_personal=keep),
                        "Two-factor authentication of {user} is reset: they set it up again "
                        "at their next sign-in.", revokes=True)


@view_config(context=UserNode, name="password", request_method="POST",
             permission=Permission.ADMIN, renderer="accounts/admin_user.jinja2")
def reset_password(request):
    password, keep = request.POST.get("password", ""), _keep_personal_tokens(request)
    return _user_action(request, lambda user: services.reset_password(
        request.dbsession, user, password, keep_personal=keep),
        "The password of {user} is changed.", revokes=True)


@view_config(context=UserNode, name="revoke-token", request_method="POST",
             permission=Permission.ADMIN, renderer="accounts/admin_user.jinja2")
def revoke_user_token(request):
    def revoke(user):
        token = tokens.get_user_token(request.dbsession, user, request.POST.get("token_id"))
        tokens.revoke(request.dbsession, token, actor=request.identity.user)

    return _user_action(request, revoke, "A token of {user} is revoked.")


@view_config(context=UserNode, name="revoke-tokens", request_method="POST",
             permission=Permission.ADMIN, renderer="accounts/admin_user.jinja2")
def revoke_user_tokens(request):
    keep = _keep_personal_tokens(request)
    return _user_action(request, lambda user: tokens.revoke_user_tokens(
        request.dbsession, user, keep_personal=keep, cause="admin"),
        "{user}:", revokes=True)
