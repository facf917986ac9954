"""An archive: one uploaded file of a ticket. The bytes live in the storage manager."""

import datetime as dt

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, String
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
    # None until computed in the background (archives over 4 MiB: archives/checksums.py).
    md5: Mapped[str | None] = mapped_column(String(32), nullable=True)
    sha256: Mapped[str] = mapped_column(String(64))
    time_create: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    time_update: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    ticket = relationship("Ticket", lazy="joined")


class TusUpload(Base):
    """A resumable (tus 1.0) upload in progress; its bytes are in an ``IUploadStore``:
    ``DATA_DIR/uploads/<key>``, or with S3 segment objects (``segment_size``, the store's
    layout for it).

    ``offset`` is the number of bytes stored durably and committed; the store may hold more
    after a crash between the two, which count for nothing and are replaced by the next
    chunk. The running hashes are not stored: they are rebuilt from the stored bytes when
    the process that held them is gone (see archives/uploads/tus/hashes.py).
    """

    __tablename__ = "tus_uploads"

    # secrets.token_urlsafe(24): 192 bits, part of the upload's URL.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    ticket_id: Mapped[int] = mapped_column(
        ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    # None until a client that deferred the length sends it.
    length: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    offset: Mapped[int] = mapped_column(BigInteger, default=0)
    # Upload-Metadata as received (HEAD echoes it), and the two keys we use.
    metadata_header: Mapped[str] = mapped_column(String(4096), default="")
    filename: Mapped[str] = mapped_column(String(255), default="")
    filetype: Mapped[str] = mapped_column(String(255), default="")
    # None (a plain upload), "partial" or "final" (Upload-Concat).
    concat: Mapped[str | None] = mapped_column(String(8), nullable=True)
    # A final upload: the ids of its partial uploads, space-separated, in order.
    parts: Mapped[str] = mapped_column(String(4096), default="")
    # Whether this upload holds one of the ticket's attempts (given back if it never
    # becomes an archive). Partial uploads hold none; their final upload holds it.
    holds_attempt: Mapped[bool] = mapped_column(default=False)
    storage_key: Mapped[str] = mapped_column(String(64), unique=True)
    # None: the bytes are the local file ``DATA_DIR/uploads/<key>``. Otherwise (S3) they
    # are segment objects of this many bytes each (the last may be shorter), which any
    # instance can reach; fixed when the upload is created (migration 0009).
    segment_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    archive_id: Mapped[int | None] = mapped_column(
        ForeignKey("archives.id", ondelete="SET NULL"), nullable=True)
    time_create: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    time_update: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class StorageAlertState(Base):
    """The one row saying whether the archive disk is below the low-space threshold, so
    that each crossing is announced once, whichever process or restart sees it."""

    __tablename__ = "storage_alert_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    low: Mapped[bool] = mapped_column(Boolean, default=False)
    free: Mapped[int] = mapped_column(BigInteger, default=0)
    changed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
