"""Users, their API tokens and recovery codes, and the record of failed sign-ins."""

import datetime as dt

from sqlalchemy import Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from collector.db import Base, UTCDateTime, utcnow


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    email: Mapped[str] = mapped_column(String(254), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Base32 TOTP secret; NULL until enrolled. Staff cannot obtain tokens without it.
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    # Time step of the last accepted code: a code is never accepted twice.
    totp_last_step: Mapped[int] = mapped_column(Integer, default=-1)
    # Part of every web session's stamp: signing out bumps it, which ends every session of
    # the user on the server (a copied cookie is worth nothing afterwards).
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    time_create: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    tokens: Mapped[list["ApiToken"]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True)

    @property
    def totp_enrolled(self):
        return self.totp_secret is not None


class ApiToken(Base):
    """A bearer credential: short-lived access, rotating refresh, or long-lived personal.

    Only the sha256 of the secret is stored; the secret is shown once.
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # access | refresh | personal
    name: Mapped[str] = mapped_column(String(100), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Minted after a TOTP check (or by the operator at the console): carries `mfa`.
    mfa: Mapped[bool] = mapped_column(Boolean, default=False)
    time_create: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Updated at most once a minute, so API requests do not each cost a write.
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The refresh token an access token was minted with; revoking one revokes the pair.
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("api_tokens.id", ondelete="CASCADE"), index=True)

    user: Mapped[User] = relationship(back_populates="tokens")


class AuthFailure(Base):
    """One failed sign-in; counted per username and per address for throttling."""

    __tablename__ = "auth_failures"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(150), index=True)
    client_address: Mapped[str] = mapped_column(String(64), index=True)
    time: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class ThrottleCounter(Base):
    """Failures counted for one throttle key in a fixed window (collector.accounts.throttle).

    A key names what is counted: ``user-address:<name>|<address>``, ``address:<address>``,
    ``user:<name>``, ``token-address:<address>``. Slots are claimed by a conditional
    UPDATE before a request is judged, so parallel requests cannot overshoot the limit.
    """

    __tablename__ = "throttle_counters"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    window_start: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class RecoveryCode(Base):
    """A single-use second factor for a lost authenticator; deleted when used.

    Codes carry 64 random bits, so their sha256 is enough (no salt or slow hash needed to
    resist guessing), and a lookup by hash is one indexed query.
    """

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    time_create: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
