"""/api/v1/auth/… — bearer tokens from password + TOTP; personal API tokens."""

from cornice import Service

from collector.accounts import commands, services
from collector.accounts import tokens as bearer
from collector.accounts.schemas import (
    Credentials,
    PersonalTokenSchema,
    RefreshSchema,
    TokenSchema,
)
from collector.api.v1 import error_handler, iso, json_schema, no_content
from collector.errors import Unauthorized, json_error
from collector.security import Permission

token = Service(name="auth_token", pyramid_route="api.auth.token",
                description="Password + TOTP → access and refresh tokens",
                error_handler=error_handler)
refresh = Service(name="auth_refresh", pyramid_route="api.auth.refresh",
                  description="Rotate a refresh token", error_handler=error_handler)
verify = Service(name="auth_verify", pyramid_route="api.auth.verify",
                 description="Is a token valid", error_handler=error_handler)
revoke = Service(name="auth_revoke", pyramid_route="api.auth.revoke",
                 description="Revoke a token", error_handler=error_handler)
tokens = Service(name="auth_tokens", pyramid_route="api.auth.tokens",
                 description="The caller's personal API tokens", error_handler=error_handler)
personal = Service(name="auth_personal", pyramid_route="api.auth.personal",
                   description="One personal API token", error_handler=error_handler)

INVALID = "Token is invalid or expired"


@token.post(**json_schema(Credentials()))
def obtain(request):
    data = request.validated
    # remote_addr, not client_addr: webob's client_addr believes any X-Forwarded-For, which
    # would let a client pick its own address and dodge the throttle. waitress rewrites
    # REMOTE_ADDR from a trusted proxy's header only.
    user = services.authenticate(request.dbsession, data["username"], data["password"],
                                 data["otp"], request.remote_addr or "")
    if user is None:
        # Answer without raising so the recorded failure commits and the throttle counts it.
        return json_error(request, 401, "wrong username, password or one-time code")
    return bearer.mint_pair(request.dbsession, request.registry.settings, user)


@refresh.post(**json_schema(RefreshSchema()))
def rotate(request):
    data = request.validated
    return bearer.refresh_pair(request.dbsession, request.registry.settings, data["refresh"])


def _valid(request, secret):
    found = bearer.find_valid_token(request.dbsession, secret,
                                      kinds={"access", "refresh", "personal"})
    if found is None or not found.user.is_active:
        raise Unauthorized(INVALID)
    return found


@verify.post(**json_schema(TokenSchema()))
def check(request):
    found = _valid(request, request.validated["token"])
    return {"valid": True, "kind": found.kind, "user": found.user.username,
            "expires_at": iso(found.expires_at)}


@revoke.post(**json_schema(TokenSchema()))
def revoke_token(request):
    found = _valid(request, request.validated["token"])
    bearer.revoke(request.dbsession, found)
    return no_content(request)


def serialise(row):
    return {"id": row.id, "name": row.name, "time_create": iso(row.time_create),
            "expires_at": iso(row.expires_at), "mfa": row.mfa,
            "last_used_at": iso(row.last_used_at)}


@tokens.get(permission=Permission.VIEW)
def list_personal(request):
    return [serialise(row) for row in
            bearer.list_personal_tokens(request.dbsession, request.identity.user)]


@tokens.post(permission=Permission.EDIT, **json_schema(PersonalTokenSchema()))
def create_personal(request):
    data = request.validated
    identity = request.identity
    row, secret = bearer.create_personal_token(request.dbsession, identity.user,
                                                 data["name"], identity.mfa,
                                                 data["lifetime_days"])
    request.response.status_int = 201
    return {**serialise(row), "token": secret}


@personal.delete(permission=Permission.EDIT)
def delete_personal(request):
    row = commands.own_personal_token(request, request.matchdict["id"])
    bearer.revoke(request.dbsession, row)
    return no_content(request)
