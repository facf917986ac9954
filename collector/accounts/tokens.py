"""Bearer tokens: sign-in pairs (access + refresh, rotated), personal tokens, their
revocation (one, or all of a user's after a password change, a two-factor reset or a
disabling) and what admins list of them. Only a token's sha256 is stored."""

import datetime as dt
import hashlib
import secrets

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import joinedload

from collector.accounts.models import ApiToken, User
from collector.audit.services import record
from collector.db import as_integer, utcnow
from collector.errors import NotFound, Unauthorized

# A token's last use is recorded at most this often.
TOKEN_USE_RESOLUTION = dt.timedelta(minutes=1)


def digest(secret):
    """What is stored of a secret (a token, a recovery or setup code): its sha256."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _mint(dbsession, user, kind, lifetime=None, mfa=True, name="", parent=None):
    secret = secrets.token_urlsafe(32)
    token = ApiToken(user=user, kind=kind, name=name, token_hash=digest(secret), mfa=mfa,
                     expires_at=utcnow() + dt.timedelta(seconds=lifetime) if lifetime else None,
                     parent_id=parent.id if parent else None)
    dbsession.add(token)
    dbsession.flush()
    return token, secret


# Built once (every API request runs it), with the user in the same query.
_TOKEN_BY_HASH = (select(ApiToken).options(joinedload(ApiToken.user))
                  .where(ApiToken.token_hash == bindparam("digest")))


def find_valid_token(dbsession, secret, kinds):
    token = dbsession.scalars(_TOKEN_BY_HASH, {"digest": digest(secret)}).one_or_none()
    if token is None or token.kind not in kinds or token.revoked_at is not None:
        return None
    if token.expires_at is not None and token.expires_at <= utcnow():
        return None
    return token


def mint_pair(dbsession, settings, user, mfa=True):
    refresh, refresh_secret = _mint(dbsession, user, "refresh",
                                    settings["auth.refresh_lifetime"], mfa)
    _, access_secret = _mint(dbsession, user, "access", settings["auth.access_lifetime"], mfa,
                             parent=refresh)
    return {"access": access_secret, "refresh": refresh_secret}


def refresh_pair(dbsession, settings, refresh_secret):
    """Rotate: the old refresh token (and its access tokens) are revoked.

    The old token is claimed by a conditional UPDATE after the user's row is locked, the
    lock every revocation of the user's tokens takes first (``revoke_user_tokens``): of two
    rotations of one refresh token only one gets a new pair, and a rotation racing a
    password change, a two-factor reset or a disabling either ends before the revocation
    (whose UPDATE then sees the new pair) or finds its token revoked.
    """
    token = find_valid_token(dbsession, refresh_secret or "", kinds={"refresh"})
    if token is None or not token.user.is_active:
        raise Unauthorized("Token is invalid or expired")
    _lock_user(dbsession, token.user_id)
    claimed = dbsession.execute(update(ApiToken).where(
        ApiToken.id == token.id, ApiToken.revoked_at.is_(None)).values(revoked_at=utcnow()))
    if claimed.rowcount != 1:
        raise Unauthorized("Token is invalid or expired")
    revoke(dbsession, token)
    return mint_pair(dbsession, settings, token.user, token.mfa)


def revoke(dbsession, token, actor=None):
    """Revoke one token (a refresh token takes the access tokens minted with it along).

    ``actor`` is who revoked it (an admin); the token's owner by default."""
    now = utcnow()
    dbsession.execute(update(ApiToken).where(
        (ApiToken.id == token.id) | (ApiToken.parent_id == token.id),
        ApiToken.revoked_at.is_(None)).values(revoked_at=now))
    record(dbsession, "token.revoke", actor=actor or token.user,
           detail={"token_id": token.id, "kind": token.kind, "name": token.name,
                   "user": token.user.username, "user_id": token.user_id})


# Access and refresh tokens come from a sign-in; personal ones are made on purpose.
SIGN_IN_KINDS = ("access", "refresh")
TOKEN_KINDS = (*SIGN_IN_KINDS, "personal")


def _lock_user(dbsession, user_id):
    # FOR UPDATE (PostgreSQL; SQLite has one writer at a time anyway): a token rotation and
    # a revocation of the same user's tokens run one after the other, never interleaved.
    dbsession.execute(select(User.id).where(User.id == user_id).with_for_update())


def revoke_user_tokens(dbsession, user, keep_personal=False, cause="admin"):
    """Revoke every live access and refresh token of ``user``, and the personal ones
    unless ``keep_personal``; the number revoked. One ``token.revoke_all`` event names the
    tokens by id (never a secret or a hash), the cause and the choice."""
    kinds = SIGN_IN_KINDS if keep_personal else TOKEN_KINDS
    _lock_user(dbsession, user.id)
    revoked = dbsession.scalars(
        update(ApiToken).where(ApiToken.user_id == user.id, ApiToken.kind.in_(kinds),
                               ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow()).returning(ApiToken.id)
        .execution_options(synchronize_session=False)).all()
    if revoked:
        # The actor is whoever the request is signed in as (the admin, or the user).
        record(dbsession, "token.revoke_all",
               detail={"user": user.username, "user_id": user.id, "cause": cause,
                       "keep_personal_tokens": keep_personal, "kinds": list(kinds),
                       "token_ids": sorted(revoked), "count": len(revoked)})
    return len(revoked)


def _live(query):
    now = utcnow()
    return query.where(ApiToken.revoked_at.is_(None),
                       (ApiToken.expires_at.is_(None)) | (ApiToken.expires_at > now))


def list_user_tokens(dbsession, user):
    """Every live token of ``user``, of every kind (for the admin page and API)."""
    return dbsession.scalars(_live(select(ApiToken).where(ApiToken.user_id == user.id))
                             .order_by(ApiToken.id)).all()


def get_user_token(dbsession, user, token_id):
    """One live token of ``user`` by id, any kind; 404 for anything else."""
    number = as_integer(token_id, minimum=1)
    token = None
    if number is not None:
        token = dbsession.scalars(_live(select(ApiToken).where(
            ApiToken.id == number, ApiToken.user_id == user.id))).one_or_none()
    if token is None:
        raise NotFound("no such token")
    return token


def create_personal_token(dbsession, user, name, mfa, lifetime_days=None):
    lifetime = lifetime_days * 86400 if lifetime_days else None
    token, secret = _mint(dbsession, user, "personal", lifetime, mfa, name=name[:100])
    record(dbsession, "token.create", actor=user,
           detail={"token_id": token.id, "name": token.name, "lifetime_days": lifetime_days})
    return token, secret


def note_token_use(token, now=None):
    """Record a bearer token's use, at most once a minute (a write per request is waste)."""
    now = now or utcnow()
    if token.last_used_at is None or now - token.last_used_at >= TOKEN_USE_RESOLUTION:
        token.last_used_at = now


def find_personal_token(dbsession, token_id):
    """The live personal token ``token_id`` of whichever user, or None; who may use it is
    the tree's decision (``resources.PersonalTokenNode``)."""
    number = as_integer(token_id, minimum=1)
    token = dbsession.get(ApiToken, number) if number is not None else None
    if token is None or token.kind != "personal" or token.revoked_at is not None:
        return None
    return token


def list_personal_tokens(dbsession, user):
    return dbsession.scalars(select(ApiToken).where(
        ApiToken.user_id == user.id, ApiToken.kind == "personal",
        ApiToken.revoked_at.is_(None)).order_by(ApiToken.id)).all()
