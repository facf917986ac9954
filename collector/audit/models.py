"""The audit log: one row per security-relevant event, never updated or deleted by the app."""

import datetime as dt

from sqlalchemy import JSON, BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from collector.db import Base, UTCDateTime, utcnow


class AuditEvent(Base):
    __tablename__ = "audit_events"
    # Lists are newest first; each filter has an index that also serves that order.
    __table_args__ = (
        Index("ix_audit_events_time_id", "time", "id"),
        Index("ix_audit_events_ticket_id_time", "ticket_id", "time"),
        Index("ix_audit_events_actor_name_time", "actor_name", "time"),
        Index("ix_audit_events_action_time", "action", "time"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    time: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # No foreign keys: the history of a user, ticket or archive outlives its row.
    actor_id: Mapped[int | None] = mapped_column(Integer)
    actor_name: Mapped[str] = mapped_column(String(150), default="")
    action: Mapped[str] = mapped_column(String(40))
    ticket_id: Mapped[int | None] = mapped_column(Integer)
    ticket_number: Mapped[int | None] = mapped_column(BigInteger)
    archive_id: Mapped[int | None] = mapped_column(Integer)
    client_address: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(300), default="")
    outcome: Mapped[str] = mapped_column(String(10), default="ok")  # ok | refused | failed
    reason: Mapped[str] = mapped_column(String(40), default="")
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
