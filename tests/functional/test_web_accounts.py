"""The accounts side of the web UI: sign-in with TOTP, recovery codes, enrolment, first-run
setup, the account page and the administration of users, through the real WSGI stack."""

import re
import time

import pyotp
import pytest
import webtest

from collector.accounts import services
from collector.accounts.models import ApiToken, AuthFailure, RecoveryCode, User


def _password_step(testapp, user, password=None, next_path=None, status=303):
    page = testapp.get("/login" + (f"?next={next_path}" if next_path else ""))
    form = page.forms["login-form"]
    form["username"] = user.username
    form["password"] = password or user.password
    return form.submit(status=status)


def test_web_login_fixture_signs_in(testapp, staff, web_login):
    web_login(testapp, staff)
    page = testapp.get("/account/")
    assert "Account" in page.text and staff.username in page.text
