"""accounts.services: second factors, recovery codes, enrolment and user administration."""

import time

import pyotp
import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from collector.accounts import services
from collector.accounts.models import User
from collector.errors import BadRequest, Conflict, TooManyRequests, Unauthorized


def test_create_user_with_and_without_totp(factory):
    assert factory.user("console").totp_secret is not None
    assert factory.user("web", totp=False).totp_secret is None
    assert not factory.user("web2", totp=False).totp_enrolled


@pytest.mark.sqlite  # a conditional UPDATE, judged by each engine
def test_second_factor_step_is_claimed_atomically(factory, engine):
    user = factory.user()
    totp = pyotp.TOTP(user.totp_secret)
    code = totp.now()
    # Another request accepted the same code meanwhile: this session's copy is stale.
    with Session(engine) as other, other.begin():
        step = int(time.time() // totp.interval)
        other.execute(update(User).where(User.id == user.id).values(totp_last_step=step))
    assert user.totp_last_step == -1
    assert services.verify_second_factor(factory.session, user, code) is None


def test_second_factor_totp_then_replay(factory):
    user = factory.user()
    code = pyotp.TOTP(user.totp_secret).now()
    assert services.verify_second_factor(factory.session, user, code) == "totp"
    assert services.verify_second_factor(factory.session, user, code) is None
    assert services.verify_second_factor(factory.session, user, "not a code") is None


def test_recovery_codes_are_single_use_and_replaced(factory):
    user = factory.user()
    codes = services.generate_recovery_codes(factory.session, user)
    assert len(codes) == services.RECOVERY_CODE_COUNT
    assert services.verify_second_factor(factory.session, user,
                                         f" {codes[0].upper().replace('-', ' ')} ") == "recovery"
    assert services.verify_second_factor(factory.session, user, codes[0]) is None
    assert services.count_recovery_codes(factory.session, user) == 9
    fresh = services.generate_recovery_codes(factory.session, user)
    assert not services.use_recovery_code(factory.session, user, codes[1])
    assert services.use_recovery_code(factory.session, user, fresh[1])
    other = factory.user()
    assert not services.use_recovery_code(factory.session, other, fresh[2])


def test_enrol_totp(factory):
    user = factory.user(totp=False)
    secret = services.new_totp_secret()
    with pytest.raises(BadRequest):
        services.enrol_totp(factory.session, user, secret, "12345x")
    assert user.totp_secret is None
    codes = services.enrol_totp(factory.session, user, secret, pyotp.TOTP(secret).now())
    assert user.totp_secret == secret and len(codes) == 10
    # The confirming code cannot be used again to sign in.
    assert not services.check_totp(factory.session, user, pyotp.TOTP(secret).now())
    with pytest.raises(Conflict):
        services.enrol_totp(factory.session, user, secret, pyotp.TOTP(secret).now())


def test_qr_svg_has_no_style_attribute():
    svg = services.qr_svg(services.totp_uri("alice", services.new_totp_secret()))
    assert svg.startswith("<svg") and "viewBox" in svg and "style" not in svg


def test_change_password_is_throttled(factory):
    user = factory.user()
    for _ in range(services.THROTTLE_PER_USER_ADDRESS):
        with pytest.raises(Unauthorized):
            services.change_password(factory.session, user, "wrong", "new password 1", "a")
    with pytest.raises(TooManyRequests):
        services.change_password(factory.session, user, user.password, "new password 1", "a")


def test_last_admin_rules(factory):
    admin = factory.user(admin=True)
    staff = factory.user()
    # Demoting or disabling someone who is not an admin is never blocked.
    services.set_active(factory.session, staff, False)
    services.set_admin(factory.session, staff, False)
    with pytest.raises(Conflict):
        services.set_active(factory.session, admin, False)
    services.set_admin(factory.session, staff, True)
    services.set_active(factory.session, staff, True)
    services.set_active(factory.session, admin, False)
    assert not admin.is_active


# --- passwords and TOTP secrets of the original (Django) logs-collector ------------------

def _django_pbkdf2(password, salt="NaClNaClNaClNaClNaCl22", iterations=1000):
    import base64
    import hashlib

    key = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations, 32)
    return f"pbkdf2_sha256${iterations}${salt}${base64.b64encode(key).decode()}"


def test_django_pbkdf2_is_verified_once_then_argon2():
    # A hash the original app wrote (Django 4.2, 600 000 iterations; see the fixture).
    alice = ("pbkdf2_sha256$600000$3AvYYKetK2KuB1WwLo1XOg$"
             "V27R+LrJlPVVDzmHoH9G4T9W1y6OTTpl2Ux/dJjxV+o=")
    user = User(username="alice", password_hash=alice)
    assert not services.check_password(user, "alice-original-2023!")
    assert user.password_hash == alice
    assert services.check_password(user, "Alice-Original-2023!")
    assert user.password_hash.startswith("$argon2id$")
    assert services.check_password(user, "Alice-Original-2023!")
    assert not services.check_password(user, "wrong")


@pytest.mark.parametrize("stored", [
    "pbkdf2_sha256$0$salt$AAAA", "pbkdf2_sha256$many$salt$AAAA", "pbkdf2_sha256$1000",
    "pbkdf2_sha256$99999999999$salt$AAAA",
])
def test_damaged_django_hashes_never_verify(stored):
    assert not services.check_password(User(username="x", password_hash=stored), "")


def test_unicode_passwords_and_imported_hash_kinds():
    import argon2

    user = User(username="u", password_hash=_django_pbkdf2("pässwörd ✓"))
    assert services.check_password(user, "pässwörd ✓")
    assert services.imported_password_hash(_django_pbkdf2("x"))[1] is None
    # Django's argon2 hashes are argon2 hashes behind a prefix.
    native = argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash("pw")
    stored, problem = services.imported_password_hash("argon2" + native)
    assert (stored, problem) == (native, None)
    assert services.check_password(User(username="v", password_hash=stored), "pw")
    stored, problem = services.imported_password_hash("bcrypt_sha256$$2b$12$abc")
    assert stored == "bcrypt_sha256$$2b$12$abc" and "'bcrypt_sha256' is not supported" in problem
    assert not services.check_password(User(username="w", password_hash=stored), "abc")
    assert services.imported_password_hash("!unusable")[1].startswith("has no usable")
    assert services.imported_password_hash("") == ("!", services.imported_password_hash("")[1])


def test_totp_secret_from_django_otp_hex_key():
    secret = services.totp_secret_from_hex("1ed79509737e1ed0e68e51b8e5c6009b7ae48f65")
    assert secret == "D3LZKCLTPYPNBZUOKG4OLRQATN5OJD3F"
    # A 16-byte key: base32 without the padding pyotp adds back itself.
    short = services.totp_secret_from_hex("00112233445566778899aabbccddeeff")
    assert "=" not in short and pyotp.TOTP(short).now().isdigit()
    # pyotp refuses secrets under 112 bits: such a user enrols again instead.
    assert services.totp_secret_from_hex("00112233445566778899aabbcc") is None
    assert services.totp_secret_from_hex("not hex") is None
    assert services.totp_secret_from_hex("") is None
    assert services.totp_secret_from_hex("ab" * 41) is None  # longer than our column
