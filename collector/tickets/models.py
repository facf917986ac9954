"""Platforms (the vendor's products) and tickets (one per help-desk case)."""

import datetime as dt
import hashlib

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, event
from sqlalchemy.orm import Mapped, mapped_column, relationship

from collector.db import Base, UTCDateTime, utcnow


class Platform(Base):
    __tablename__ = "platforms"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(20), unique=True)
    pretty_name: Mapped[str] = mapped_column(String(100))
    # Open to all staff unless an admin restricts it to its members.
    restricted: Mapped[bool] = mapped_column(Boolean, default=False)
    # Retention overrides (admin-set); None: the server's RETENTION_* setting, 0: never.
    retention_resolved_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    retention_max_days: Mapped[int | None] = mapped_column(Integer, nullable=True)

    # Loaded only when asked for (a restricted platform's ACL, the platform API): every
    # ticket query joins its platform, and most never need the members.
    members: Mapped[list["PlatformMember"]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, lazy="select")


class PlatformMember(Base):
    __tablename__ = "platform_members"

    platform_id: Mapped[int] = mapped_column(
        ForeignKey("platforms.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)


# The one range of ticket numbers, wherever a number is taken (API, pages, lookups,
# filters): what the original project's integer column held and every backend compares.
NUMBER_MIN, NUMBER_MAX = 1, 2 ** 31 - 1


class Ticket(Base):
    __tablename__ = "tickets"
    # Lists are newest first and paged: (time_create, id) serves the ORDER BY and OFFSET.
    __table_args__ = (Index("ix_tickets_time_create_id", "time_create", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[int] = mapped_column(BigInteger, unique=True)
    platform_id: Mapped[int] = mapped_column(
        ForeignKey("platforms.id", ondelete="RESTRICT"), index=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    # Tokens are looked up by this sha256 (hex) of the token, never by the token itself:
    # how long an index comparison takes then says nothing about a guess's prefix. Set
    # whenever ``token`` is (the listener below).
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    attempts: Mapped[int] = mapped_column(Integer, default=5)
    resolved: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str] = mapped_column(Text, default="")
    # Legal hold (admin): no retention rule and no deletion touches its archives.
    legal_hold: Mapped[bool] = mapped_column(Boolean, default=False)
    # When it was last resolved (retention counts from it); None while open.
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    time_create: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    time_update: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    platform: Mapped[Platform] = relationship(lazy="joined")
    user = relationship("User", lazy="joined")


def token_digest(token):
    """The looked-up form of an (already normalised) upload token."""
    return hashlib.sha256(token.encode()).hexdigest()


@event.listens_for(Ticket.token, "set")
def _set_token_digest(ticket, value, _old, _initiator):
    ticket.token_digest = token_digest(value) if value is not None else None
