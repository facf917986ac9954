"""Account commands: what a caller asks where the tree's ACL decides (a personal token is
its owner's alone). The rules are in ``accounts.services``."""

from collector.errors import NotFound
from collector.resources import require
from collector.security import Permission


def own_personal_token(request, token_id):
    """The caller's live personal token ``token_id``. The token's node in the tree decides
    (its ACL grants its owner alone); another user's token, a revoked or a missing one
    answer alike: 404 ``no such token``."""
    missing = "no such token"
    try:
        node = request.root["tokens"][token_id]
    except KeyError:
        raise NotFound(missing) from None
    require(request, Permission.EDIT, node, missing, missing)
    return node.token
