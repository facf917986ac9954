"""Accounts: passwords (argon2), TOTP, recovery codes, sign-in throttling, user
administration and the first-run setup code. Bearer tokens are in ``tokens.py``."""

import base64
import binascii
import hashlib
import os
import secrets
import time
from pathlib import Path

import argon2
import pyotp
from sqlalchemy import delete, func, insert, select, update

from collector.accounts import throttle
from collector.accounts.models import AuthFailure, RecoveryCode, User
from collector.accounts.tokens import digest as _digest
from collector.accounts.tokens import revoke_user_tokens
from collector.audit.services import record
from collector.db import utcnow
from collector.errors import (
    BadRequest,
    Conflict,
    DomainError,
    NotFound,
    TooManyRequests,
    Unauthorized,
)
from collector.numbers import is_digits

_hasher = argon2.PasswordHasher()

# Failed sign-ins allowed per window before 429: for one user from one client address,
# from one address whatever the user, and for one user from everywhere — a much higher
# ceiling, which an address without failures does not meet (collector.accounts.throttle).
THROTTLE_WINDOW = throttle.WINDOW
THROTTLE_PER_USER_ADDRESS = 5
THROTTLE_PER_ADDRESS = 20
THROTTLE_PER_USER = 100
THROTTLE_MESSAGE = "too many failed sign-in attempts; try again in {minutes} minutes"
TOTP_ISSUER = "Logs Collector"
PASSWORD_MIN_LENGTH = 8
RECOVERY_CODE_COUNT = 10
# Our codes have 16 characters (64 bits); imported django_otp backup codes have 8 by
# default and at most 16. Shorter ones are not accepted (see import_recovery_codes).
RECOVERY_CODE_LENGTHS = (6, 16)
# A bearer token's last use is written at most this often.
SETUP_CODE_FILE = "setup-code"

# A real hash (of a random password nobody kept) to verify against when the user does
# not exist, so an unknown name costs as long as a wrong password. A constant, because
# hashing at import would cost every process argon2's 64 MiB at start-up.
_DUMMY_HASH = ("$argon2id$v=19$m=65536,t=3,p=4$m7gUjRxin6EGu5Nqgj2XyA$"
               "Sk1ijKr6rWUS8xWZCzRAUBklZzMXkvdTfpd4UP283MQ")


# --- users -------------------------------------------------------------------------------

def get_user(dbsession, user_id):
    return dbsession.get(User, user_id)


def session_stamp(user):
    """Binds a web session to the credentials it was made with: a new password, a
    reset (or new) TOTP secret or a sign-out changes the stamp, which ends older sessions."""
    material = f"{user.id}|{user.password_hash}|{user.totp_secret or ''}|{user.session_epoch}"
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def end_sessions(dbsession, user_id):
    """Sign-out: every web session of the user stops working, on every device.

    Sessions are signed cookies; a copy of one taken before the sign-out would otherwise
    stay valid until it times out. Bumping the epoch changes the stamp they carry."""
    dbsession.execute(update(User).where(User.id == user_id)
                      .values(session_epoch=User.session_epoch + 1))


def get_user_by_name(dbsession, username):
    return dbsession.scalars(select(User).where(User.username == username)).one_or_none()


def _check_new_password(password):
    if len(password or "") < PASSWORD_MIN_LENGTH:
        raise BadRequest(f"password must be at least {PASSWORD_MIN_LENGTH} characters")
    if len(password) > 1024:
        raise BadRequest("password must be at most 1024 characters")


def create_user(dbsession, username, password, is_admin=False, email="", totp=True):
    """A new user; ``totp=False`` leaves TOTP unenrolled (enrolment at first sign-in).

    The console (``collector create-user``) enrols at once and prints the provisioning
    URI; users made on the web pages start without a secret and enrol in the browser.
    """
    username = (username or "").strip()
    if not username or len(username) > 150:
        raise BadRequest("username must be 1 to 150 characters")
    _check_new_password(password)
    email = (email or "").strip()
    if len(email) > 254:
        raise BadRequest("email must be at most 254 characters")
    if get_user_by_name(dbsession, username) is not None:
        raise Conflict(f"user {username} already exists")
    user = User(username=username, email=email, password_hash=_hasher.hash(password),
                is_admin=is_admin, totp_secret=pyotp.random_base32() if totp else None)
    dbsession.add(user)
    dbsession.flush()
    record(dbsession, "user.create", detail={"user": username, "user_id": user.id,
                                             "admin": is_admin})
    return user


def any_user_exists(dbsession):
    return dbsession.scalar(select(User.id).limit(1)) is not None


def list_users(dbsession):
    return dbsession.scalars(select(User).order_by(User.username)).all()


def set_password(user, password):
    """The new password's hash on ``user``; the events that use it end the old sign-ins."""
    _check_new_password(password)
    user.password_hash = _hasher.hash(password)


def change_password(dbsession, user, current, new, address, keep_personal=False):
    """The user's own change: the current password is required (and throttled).

    Every access and refresh token of the user is revoked (whoever stole the old password
    may hold one), and the personal API tokens too unless ``keep_personal``.
    """
    attempt = begin_attempt(dbsession, user.username, address)
    if not check_password(user, current):
        attempt.failed()
        raise Unauthorized("the current password is wrong")
    attempt.succeeded()
    set_password(user, new)
    record(dbsession, "user.password", detail={"user": user.username, "user_id": user.id,
                                               "keep_personal_tokens": keep_personal})
    return revoke_user_tokens(dbsession, user, keep_personal, cause="user.password")


def reset_password(dbsession, user, password, keep_personal=False):
    """An admin sets a new password: the user's bearer tokens are revoked as for
    ``change_password`` (personal ones unless the admin keeps them)."""
    set_password(user, password)
    record(dbsession, "user.password", detail={"user": user.username, "user_id": user.id,
                                               "keep_personal_tokens": keep_personal})
    return revoke_user_tokens(dbsession, user, keep_personal, cause="user.password")


def _active_admins_besides(dbsession, user):
    # FOR UPDATE (PostgreSQL): two admins demoting each other at once cannot both pass.
    return dbsession.scalars(select(User.id).where(
        User.is_admin.is_(True), User.is_active.is_(True), User.id != user.id,
    ).with_for_update()).all()


def set_active(dbsession, user, active, keep_personal=False):
    """Disable or enable a user. Disabling revokes every access and refresh token, and the
    personal tokens unless ``keep_personal``; enabling revives nothing (a revoked token
    stays revoked), so the returned count is always 0 then."""
    if not active and user.is_admin and user.is_active \
            and not _active_admins_besides(dbsession, user):
        raise Conflict(f"{user.username} is the last active admin and cannot be disabled")
    user.is_active = active
    detail = {"user": user.username, "user_id": user.id}
    if not active:
        detail["keep_personal_tokens"] = keep_personal
    record(dbsession, "user.enable" if active else "user.disable", detail=detail)
    if active:
        return 0
    return revoke_user_tokens(dbsession, user, keep_personal, cause="user.disable")


def set_admin(dbsession, user, is_admin):
    if not is_admin and user.is_admin and user.is_active \
            and not _active_admins_besides(dbsession, user):
        raise Conflict(f"{user.username} is the last active admin and must stay admin")
    user.is_admin = is_admin
    record(dbsession, "user.admin", detail={"user": user.username, "user_id": user.id,
                                            "admin": is_admin})


def reset_totp(dbsession, user, keep_personal=False):
    """Forget the user's second factor: they enrol again at their next sign-in.

    The tokens minted after the old second factor are revoked (personal ones unless
    ``keep_personal``): a reset means that factor can no longer be trusted."""
    user.totp_secret = None
    user.totp_last_step = -1
    dbsession.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    record(dbsession, "2fa.reset", detail={"user": user.username, "user_id": user.id,
                                           "keep_personal_tokens": keep_personal})
    return revoke_user_tokens(dbsession, user, keep_personal, cause="2fa.reset")


def provisioning_uri(user):
    return pyotp.TOTP(user.totp_secret).provisioning_uri(name=user.username,
                                                         issuer_name=TOTP_ISSUER)


def check_password(user, password):
    """Whether ``password`` is the user's; a hash of an older kind (or cost) is replaced by
    a current argon2 hash of it on success (the caller's transaction saves it)."""
    if user is None:
        try:
            _hasher.verify(_DUMMY_HASH, password or "")
        except argon2.exceptions.VerificationError:
            pass
        return False
    if user.password_hash.startswith(DJANGO_PBKDF2):
        # Imported from the original logs-collector: verified once, then argon2.
        if not _check_django_pbkdf2(user.password_hash, password or ""):
            return False
        user.password_hash = _hasher.hash(password)
        return True
    try:
        _hasher.verify(user.password_hash, password or "")
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return False
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return True


# --- passwords and TOTP secrets of the original (Django) logs-collector ---------------

DJANGO_PBKDF2 = "pbkdf2_sha256$"
# A stored hash is trusted data, but a damaged one must not make a sign-in take minutes.
_DJANGO_MAX_ITERATIONS = 10_000_000


def _check_django_pbkdf2(encoded, password):
    """Django's ``pbkdf2_sha256$<iterations>$<salt>$<base64 of the 32-byte key>``."""
    try:
        algorithm, iterations, salt, expected = encoded.split("$", 3)
        iterations = int(iterations)
        secret = password.encode("utf-8")
    except (ValueError, UnicodeError):
        return False
    if algorithm != DJANGO_PBKDF2[:-1] or not 0 < iterations <= _DJANGO_MAX_ITERATIONS:
        return False
    derived = hashlib.pbkdf2_hmac("sha256", secret, salt.encode("utf-8"), iterations, 32)
    return secrets.compare_digest(base64.b64encode(derived).decode("ascii"), expected)


def imported_password_hash(django_hash):
    """The password hash to store for a user of the original app, and a problem or None.

    ``pbkdf2_sha256`` (Django's default) is kept and verified at the first sign-in, which
    replaces it by argon2; Django's ``argon2`` hashes are argon2 hashes behind a prefix.
    Other algorithms are kept as they are (they never verify here): that user needs a
    new password from an admin.
    """
    django_hash = django_hash or ""
    if django_hash.startswith(DJANGO_PBKDF2):
        return django_hash, None
    if django_hash.startswith("argon2$argon2"):
        return django_hash[len("argon2"):], None
    if django_hash.startswith("!") or not django_hash:
        return django_hash or "!", "has no usable password (set one under Admin → Users)"
    algorithm = django_hash.split("$", 1)[0]
    return django_hash, (f"password hash algorithm {algorithm!r} is not supported: set a "
                         "new password under Admin → Users")


def totp_secret_from_hex(key):
    """django_otp keeps the TOTP secret as hex; authenticators (and pyotp) use base32 of
    the same bytes. None when ``key`` is not hex, shorter than pyotp accepts (112 bits)
    or too long for our column."""
    try:
        raw = binascii.unhexlify((key or "").strip())
    except (binascii.Error, ValueError):
        return None
    secret = base64.b32encode(raw).decode("ascii").rstrip("=")
    return secret if len(raw) >= 14 and len(secret) <= 64 else None


def _matching_step(secret, code, last_step, now=None):
    """The time step (current ±1, newer than ``last_step``) whose code is ``code``."""
    code = (code or "").strip().replace(" ", "")
    if not secret or not is_digits(code, max_length=10):
        return None
    totp = pyotp.TOTP(secret)
    now = time.time() if now is None else now
    step_now = int(now // totp.interval)
    for step in (step_now - 1, step_now, step_now + 1):
        if step > last_step and secrets.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def check_totp(dbsession, user, code, now=None):
    """Accept a code of the current step ±1, never the same step (or an older one) twice.

    The step is claimed by a conditional UPDATE, so requests racing with the same code
    (on any thread or instance) cannot both pass. The one check of a TOTP code, for the
    web sign-in and the API alike.
    """
    step = _matching_step(user.totp_secret, code, user.totp_last_step, now)
    if step is None:
        return False
    claimed = dbsession.execute(update(User).where(
        User.id == user.id, User.totp_last_step < step).values(totp_last_step=step))
    dbsession.refresh(user, ["totp_last_step"])
    return claimed.rowcount == 1


def verify_second_factor(dbsession, user, code, now=None):
    """TOTP code or recovery code; ``"totp"``, ``"recovery"`` or None."""
    if check_totp(dbsession, user, code, now):
        return "totp"
    if use_recovery_code(dbsession, user, code):
        return "recovery"
    return None


def new_totp_secret():
    return pyotp.random_base32()


def totp_uri(username, secret):
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=TOTP_ISSUER)


def qr_svg(uri):
    """The provisioning URI as an inline SVG QR code (no style attributes: CSP)."""
    import segno

    # omitsize: a viewBox instead of a fixed size, so the stylesheet can size it.
    return segno.make(uri, error="m").svg_inline(scale=5, border=2, light="#fff",
                                                 dark="#000", omitsize=True,
                                                 title="TOTP QR code")


def enrol_totp(dbsession, user, secret, code, now=None):
    """Confirm enrolment with one code of the candidate secret; the recovery codes."""
    if user.totp_secret is not None:
        raise Conflict("two-factor authentication is already set up")
    step = _matching_step(secret, code, -1, now)
    if step is None:
        raise BadRequest("that code does not match; check the time on your device and "
                         "enter the current code")
    user.totp_secret = secret
    user.totp_last_step = step
    record(dbsession, "2fa.enrol", actor=user)
    return generate_recovery_codes(dbsession, user)


# --- recovery codes ----------------------------------------------------------------------

def _normalise_code(code):
    return "".join(ch for ch in (code or "").lower() if ch.isalnum())


def generate_recovery_codes(dbsession, user):
    """Replace the user's recovery codes by fresh ones; the only time they are shown."""
    dbsession.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = secrets.token_hex(8)  # 64 bits
        codes.append("-".join(raw[i:i + 4] for i in range(0, 16, 4)))
        dbsession.add(RecoveryCode(user_id=user.id, code_hash=_digest(raw)))
    dbsession.flush()
    return codes


def import_recovery_codes(dbsession, user, codes):
    """Keep codes issued elsewhere (django_otp backup codes) as recovery codes; the ones
    kept. They are checked like ours; only lengths a person can type are taken."""
    kept = []
    for code in codes:
        code = _normalise_code(code)
        if RECOVERY_CODE_LENGTHS[0] <= len(code) <= RECOVERY_CODE_LENGTHS[1]:
            dbsession.add(RecoveryCode(user_id=user.id, code_hash=_digest(code)))
            kept.append(code)
    dbsession.flush()
    return kept


def use_recovery_code(dbsession, user, code):
    code = _normalise_code(code)
    if not RECOVERY_CODE_LENGTHS[0] <= len(code) <= RECOVERY_CODE_LENGTHS[1]:
        return False
    # One DELETE: a code used by two requests at once is accepted only once.
    used = dbsession.execute(delete(RecoveryCode).where(
        RecoveryCode.user_id == user.id, RecoveryCode.code_hash == _digest(code)))
    return used.rowcount == 1


def count_recovery_codes(dbsession, user):
    return dbsession.scalar(select(func.count()).select_from(RecoveryCode).where(
        RecoveryCode.user_id == user.id))


# --- first run ---------------------------------------------------------------------------

def make_setup_code(data_dir):
    """A fresh one-time code for ``/setup``; only its sha256 is kept (mode 0600)."""
    code = "-".join(secrets.token_hex(2) + secrets.token_hex(2) for _ in range(3))
    path = Path(data_dir) / SETUP_CODE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(_digest(_normalise_code(code)) + "\n")
    return code


def check_setup_code(data_dir, code):
    path = Path(data_dir) / SETUP_CODE_FILE
    try:
        expected = path.read_text().strip()
    except FileNotFoundError:
        raise BadRequest("no setup code is active: restart `collector serve` and use the "
                         "code it prints, or create the first admin with `collector "
                         "create-user`") from None
    return secrets.compare_digest(expected, _digest(_normalise_code(code)))


def clear_setup_code(data_dir):
    (Path(data_dir) / SETUP_CODE_FILE).unlink(missing_ok=True)


def claim_setup_code(data_dir):
    """Take the code file out of the way (an atomic rename): of two setups racing with
    the right code, one wins. ``release_setup_code`` ends the claim after the commit."""
    path = Path(data_dir) / SETUP_CODE_FILE
    claimed = path.with_name(f"{SETUP_CODE_FILE}.{secrets.token_hex(8)}")
    try:
        os.rename(path, claimed)
    except FileNotFoundError:
        raise Conflict("the setup code was used meanwhile") from None
    return claimed


def release_setup_code(claimed, used):
    """After the transaction: the code is gone if it was used, else usable again."""
    if used:
        claimed.unlink(missing_ok=True)
    elif claimed.exists():
        os.rename(claimed, claimed.with_name(SETUP_CODE_FILE))


def create_first_admin(dbsession, data_dir, code, username, password, email, address):
    """The first admin, while no user exists, for the right setup code (TOTP unenrolled).

    Returns the user and the claimed code file, for ``release_setup_code`` after commit.
    """
    if any_user_exists(dbsession):
        raise NotFound("setup is done")
    attempt = begin_attempt(dbsession, "(setup)", address)
    if not code or not check_setup_code(data_dir, code):
        attempt.failed()
        raise Unauthorized("wrong setup code: use the one `collector serve` printed")
    attempt.succeeded()
    claimed = claim_setup_code(data_dir)
    try:
        user = create_user(dbsession, username, password, is_admin=True, email=email,
                           totp=False)
    except DomainError:
        release_setup_code(claimed, used=False)
        raise
    return user, claimed


# --- throttling --------------------------------------------------------------------------

def _throttle_keys(username, address):
    username, address = username[:150], address[:64]
    return {f"user-address:{username}|{address}": THROTTLE_PER_USER_ADDRESS,
            f"address:{address}": THROTTLE_PER_ADDRESS,
            f"user:{username}": THROTTLE_PER_USER}


class Attempt:
    """One judged sign-in step (password, code, setup code), already counted as a failure.

    ``begin_attempt`` took a slot of every throttle and wrote the failure before anything
    was judged, in a transaction of its own: whatever happens next — a wrong answer, an
    error, a crash — is a recorded, throttled failure. Only ``succeeded`` takes it back,
    in the request's transaction, so it holds only if the request commits.
    """

    def __init__(self, dbsession, username, keys, failure_id, now):
        self.dbsession, self.username = dbsession, username
        self.keys, self.failure_id, self.now = keys, failure_id, now

    def succeeded(self):
        throttle.give_back(self.dbsession, self.keys, self.now)
        self.dbsession.execute(delete(AuthFailure).where(AuthFailure.id == self.failure_id))

    def failed(self):
        record(self.dbsession, "signin.failure", outcome="refused", reason="bad_credentials",
               detail={"username": self.username})


def begin_attempt(dbsession, username, address, now=None):
    """Take a slot of each sign-in throttle for ``username`` from ``address`` (429 when
    one is full) and record the attempt as a failure until it succeeds.

    An address with no failure in the window is not held back by the user's ceiling, so
    that nobody can lock a user out for everyone: the user can still sign in from a clean
    address while someone elsewhere guesses.
    """
    now = now or utcnow()
    username, address = (username or "")[:150], (address or "")[:64]
    keys = _throttle_keys(username, address)
    with throttle.engine_of(dbsession).begin() as connection:
        clean = throttle.used(connection, f"address:{address}", now) == 0
        for key, limit in sorted(keys.items()):
            if clean and key.startswith("user:"):
                limit = None
            wait = throttle.take(connection, key, limit, now)
            if wait is not None:
                # Leaving the block by an exception rolls back the slots taken so far.
                raise TooManyRequests(
                    THROTTLE_MESSAGE.format(minutes=max(1, round(wait / 60))),
                    Retry_After=wait)
        failure_id = connection.execute(insert(AuthFailure).values(
            username=username, client_address=address, time=now)
            .returning(AuthFailure.id)).scalar_one()
        connection.execute(delete(AuthFailure).where(AuthFailure.time < now - THROTTLE_WINDOW))
    return Attempt(dbsession, username, keys, failure_id, now)


def lockouts(dbsession, now=None):
    """The sign-in throttles in force now, for admins: dicts of ``kind`` (``user``,
    ``user-address`` or ``address``), ``user``, ``address``, ``failures``, ``until``."""
    now = now or utcnow()
    found = []
    for kind, limit in (("user", THROTTLE_PER_USER), ("user-address",
                                                     THROTTLE_PER_USER_ADDRESS),
                        ("address", THROTTLE_PER_ADDRESS)):
        for key, count, until in throttle.full_keys(dbsession, f"{kind}:", limit, now):
            value = key[len(kind) + 1:]
            user, _, address = value.rpartition("|") if kind == "user-address" else (
                (value, "", "") if kind == "user" else ("", "", value))
            found.append({"kind": kind, "user": user, "address": address,
                          "failures": count, "until": until})
    return found


def authenticate(dbsession, username, password, otp, address):
    """The user for a correct password and TOTP code; None (401) or 429.

    A right and a wrong password get the same answer when the code is wrong, malformed
    or replayed; every failure is counted before it is judged (``begin_attempt``).
    """
    attempt = begin_attempt(dbsession, username, address)
    user = get_user_by_name(dbsession, username)
    ok = check_password(user, password) and user.is_active
    ok = ok and check_totp(dbsession, user, otp)
    if not ok:
        attempt.failed()
        return None
    attempt.succeeded()
    user.last_login = utcnow()
    record(dbsession, "signin.success", actor=user, detail={"via": "api"})
    return user


# --- users by name and by id, for the platforms' members -----------------------------------

def user_ids_by_name(dbsession, names):
    """``{username: id}`` of the users among ``names`` that exist."""
    if not names:
        return {}
    return dict(dbsession.execute(
        select(User.username, User.id).where(User.username.in_(names))).all())


def users_with_ids(dbsession, ids):
    """The users with these ids, by username."""
    if not ids:
        return []
    return dbsession.scalars(select(User).where(User.id.in_(ids))
                             .order_by(User.username)).all()

