"""An archive: one uploaded file of a ticket. The bytes live in the storage manager."""

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from collector.db import Base, UTCDateTime, utcnow


class Archive(Base):
    __tablename__ = "archives"
    # Lists are newest first and paged: (time_create, id) serves the ORDER BY and OFFSET.
    __table_args__ = (Index("ix_archives_time_create_id", "time_create", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    # Where the bytes are, built from ids only (never from the client's name).
    storage_key: Mapped[str] = mapped_column(String(64), unique=True)
    # The client's file name, sanitised: metadata for Content-Disposition only.
    name: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    md5: Mapped[str] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(String(64))
    time_create: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    time_update: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    ticket = relationship("Ticket", lazy="joined")
