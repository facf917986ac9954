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
    assert not services.check_totp(user, pyotp.TOTP(secret).now())
    with pytest.raises(Conflict):
        services.enrol_totp(factory.session, user, secret, pyotp.TOTP(secret).now())


def test_qr_svg_has_no_style_attribute():
    svg = services.qr_svg(services.totp_uri("alice", services.new_totp_secret()))
    assert svg.startswith("<svg") and "viewBox" in svg and "style" not in svg


def test_change_password_is_throttled(factory):
    user = factory.user()
    for _ in range(services.THROTTLE_PER_USER):
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
