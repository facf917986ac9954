"""Accounts: passwords (argon2), TOTP, bearer tokens and sign-in throttling."""

import datetime as dt
import hashlib
import secrets
import time

import argon2
import pyotp
from sqlalchemy import delete, func, select, update

from collector.accounts.models import ApiToken, AuthFailure, User
from collector.db import utcnow
from collector.errors import BadRequest, Conflict, TooManyRequests, Unauthorized

_hasher = argon2.PasswordHasher()

# Failed sign-ins allowed per window before 429 (per username, per client address).
THROTTLE_WINDOW = dt.timedelta(minutes=15)
THROTTLE_PER_USER = 5
THROTTLE_PER_ADDRESS = 20
TOTP_ISSUER = "Logs Collector"

# A real hash (of a random password nobody kept) to verify against when the user does
# not exist, so an unknown name costs as long as a wrong password. A constant, because
# hashing at import would cost every process argon2's 64 MiB at start-up.
_DUMMY_HASH = ("$argon2id$v=19$m=65536,t=3,p=4$m7gUjRxin6EGu5Nqgj2XyA$"
               "Sk1ijKr6rWUS8xWZCzRAUBklZzMXkvdTfpd4UP283MQ")


# --- users -------------------------------------------------------------------------------

def get_user(dbsession, user_id):
    return dbsession.get(User, user_id)


def get_user_by_name(dbsession, username):
    return dbsession.scalars(select(User).where(User.username == username)).one_or_none()


def create_user(dbsession, username, password, is_admin=False, email=""):
    username = (username or "").strip()
    if not username or len(username) > 150:
        raise BadRequest("username must be 1 to 150 characters")
    if len(password or "") < 8:
        raise BadRequest("password must be at least 8 characters")
    if get_user_by_name(dbsession, username) is not None:
        raise Conflict(f"user {username} already exists")
    user = User(username=username, email=email, password_hash=_hasher.hash(password),
                is_admin=is_admin, totp_secret=pyotp.random_base32())
    dbsession.add(user)
    dbsession.flush()
    return user


def provisioning_uri(user):
    return pyotp.TOTP(user.totp_secret).provisioning_uri(name=user.username,
                                                         issuer_name=TOTP_ISSUER)


def check_password(user, password):
    if user is None:
        try:
            _hasher.verify(_DUMMY_HASH, password or "")
        except argon2.exceptions.VerificationError:
            pass
        return False
    try:
        _hasher.verify(user.password_hash, password or "")
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return False
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return True


def check_totp(user, code, now=None):
    """Accept a code of the current step ±1, never the same step (or an older one) twice."""
    if not user.totp_secret:
        return False
    code = (code or "").strip().replace(" ", "")
    if not code.isdigit():
        return False
    totp = pyotp.TOTP(user.totp_secret)
    now = time.time() if now is None else now
    step_now = int(now // totp.interval)
    for step in (step_now - 1, step_now, step_now + 1):
        if step > user.totp_last_step and secrets.compare_digest(totp.generate_otp(step), code):
            user.totp_last_step = step
            return True
    return False


# --- throttling --------------------------------------------------------------------------

def check_throttle(dbsession, username, address):
    since = utcnow() - THROTTLE_WINDOW
    per_user = dbsession.scalar(select(func.count()).where(
        AuthFailure.username == username, AuthFailure.time >= since))
    per_address = dbsession.scalar(select(func.count()).where(
        AuthFailure.client_address == address, AuthFailure.time >= since))
    if per_user >= THROTTLE_PER_USER or per_address >= THROTTLE_PER_ADDRESS:
        raise TooManyRequests("too many failed sign-in attempts; try again in 15 minutes",
                              Retry_After=int(THROTTLE_WINDOW.total_seconds()))


def record_failure(dbsession, username, address):
    dbsession.add(AuthFailure(username=username[:150], client_address=address[:64]))
    # Keep the table small: forget failures older than the window.
    dbsession.execute(delete(AuthFailure).where(AuthFailure.time < utcnow() - THROTTLE_WINDOW))


def authenticate(dbsession, username, password, otp, address):
    """The user for a correct password and TOTP code; raises 401 or 429.

    A failure is recorded in the caller's transaction, so the caller must commit it
    (answer without raising) for the throttle to count it.
    """
    check_throttle(dbsession, username, address)
    user = get_user_by_name(dbsession, username)
    ok = check_password(user, password) and user.is_active
    ok = ok and check_totp(user, otp)
    if not ok:
        record_failure(dbsession, username, address)
        return None
    user.last_login = utcnow()
    return user


# --- bearer tokens -----------------------------------------------------------------------

def _digest(secret):
    return hashlib.sha256(secret.encode()).hexdigest()


def _mint(dbsession, user, kind, lifetime=None, mfa=True, name="", parent=None):
    secret = secrets.token_urlsafe(32)
    token = ApiToken(user=user, kind=kind, name=name, token_hash=_digest(secret), mfa=mfa,
                     expires_at=utcnow() + dt.timedelta(seconds=lifetime) if lifetime else None,
                     parent_id=parent.id if parent else None)
    dbsession.add(token)
    dbsession.flush()
    return token, secret


def find_valid_token(dbsession, secret, kinds):
    token = dbsession.scalars(select(ApiToken).where(
        ApiToken.token_hash == _digest(secret))).one_or_none()
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
    """Rotate: the old refresh token (and its access tokens) are revoked."""
    token = find_valid_token(dbsession, refresh_secret or "", kinds={"refresh"})
    if token is None or not token.user.is_active:
        raise Unauthorized("Token is invalid or expired")
    revoke(dbsession, token)
    return mint_pair(dbsession, settings, token.user, token.mfa)


def revoke(dbsession, token):
    now = utcnow()
    dbsession.execute(update(ApiToken).where(
        (ApiToken.id == token.id) | (ApiToken.parent_id == token.id),
        ApiToken.revoked_at.is_(None)).values(revoked_at=now))


def create_personal_token(dbsession, user, name, mfa, lifetime_days=None):
    lifetime = lifetime_days * 86400 if lifetime_days else None
    return _mint(dbsession, user, "personal", lifetime, mfa, name=name[:100])


def list_personal_tokens(dbsession, user):
    return dbsession.scalars(select(ApiToken).where(
        ApiToken.user_id == user.id, ApiToken.kind == "personal",
        ApiToken.revoked_at.is_(None)).order_by(ApiToken.id)).all()
