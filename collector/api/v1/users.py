"""/api/v1/users/{id}/tokens/ — every live bearer token of a user, for admins: list them,
revoke one, revoke them all. The routes traverse to the tree's UserNode, the context of the
/admin/users/{id}/ page, so the same Admin ACL (admin with two-factor) decides."""

from cornice import Service

from collector.accounts import tokens
from collector.accounts.schemas import RevokeAllSchema
from collector.api.v1 import error_handler, json_schema, no_content
from collector.api.v1.auth import serialise as serialise_token
from collector.security import Permission

user_tokens = Service(name="user_tokens", pyramid_route="api.user.tokens",
                      description="A user's live API tokens (admin only)",
                      error_handler=error_handler)
revoke_all = Service(name="user_tokens_revoke", pyramid_route="api.user.tokens.revoke",
                     description="Revoke a user's API tokens (admin only)",
                     error_handler=error_handler)
user_token = Service(name="user_token", pyramid_route="api.user.token",
                     description="One API token of a user (admin only)",
                     error_handler=error_handler)


def serialise(row):
    """What an admin may know of a token: a personal token's fields and its kind, never
    its secret or its hash."""
    return {**serialise_token(row), "kind": row.kind}


@user_tokens.get(permission=Permission.ADMIN)
def list_tokens(request):
    return [serialise(row) for row in
            tokens.list_user_tokens(request.dbsession, request.context.user)]


@revoke_all.post(permission=Permission.ADMIN, **json_schema(RevokeAllSchema()))
def revoke_tokens(request):
    data = request.validated
    count = tokens.revoke_user_tokens(request.dbsession, request.context.user,
                                        keep_personal=data["keep_personal_tokens"],
                                        cause="admin")
    return {"revoked": count, "keep_personal_tokens": data["keep_personal_tokens"]}


@user_token.delete(permission=Permission.ADMIN)
def revoke_token(request):
    token = tokens.get_user_token(request.dbsession, request.context.user,
                                    request.matchdict["token_id"])
    tokens.revoke(request.dbsession, token, actor=request.identity.user)
    return no_content(request)
