"""Help-desk webhooks: a platform's receivers, the outbox of events, every attempt."""

import datetime as dt

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from collector.db import Base, UTCDateTime, utcnow
from collector.tickets.models import Platform


class Webhook(Base):
    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    platform_id: Mapped[int] = mapped_column(
        ForeignKey("platforms.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    # The HMAC key; kept as given because signing needs it (admins set and see it).
    secret: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    time_create: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    platform = relationship(Platform, lazy="joined")


class WebhookDelivery(Base):
    """One event for one webhook: the outbox row, written in the transaction of the change.

    ``state``: ``pending`` (to be sent at ``next_attempt_at``), ``delivered`` or ``failed``
    (given up after the retry period). A worker claims a row by setting ``claimed_by`` and
    ``claimed_until``; a claim past ``claimed_until`` belongs to a dead worker.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_state_next", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[int] = mapped_column(
        ForeignKey("webhooks.id", ondelete="CASCADE"), index=True)
    # The same on every retry: a receiver can drop a duplicate by it.
    event_id: Mapped[str] = mapped_column(String(36))
    event: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    claimed_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str] = mapped_column(String(500), default="")
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    time_create: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    webhook = relationship(Webhook, lazy="joined")
    attempt_rows: Mapped[list["WebhookAttempt"]] = relationship(
        order_by="WebhookAttempt.id", lazy="selectin", viewonly=True)


class WebhookAttempt(Base):
    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True)
    time: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The receiver's HTTP status, or None when no answer came (refused, timeout).
    status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str] = mapped_column(String(500), default="")
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
