"""The member index of an archive: one state row per archive and one row per member.

Rows, not a file: the listing pages and the API page through members and look one up by
path with an index, on SQLite and PostgreSQL alike, and both tables go with their archive
by ``ON DELETE CASCADE``. Only the gzip seek points (binary windows of 32 KiB each) live in
a file beside the archive (``DATA_DIR/index/``), removed by the storage manager with it.
"""

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from collector.db import Base, UTCDateTime, utcnow


class ArchiveIndex(Base):
    """Whether an archive's member index exists, is being built, or could not be built.

    ``building`` rows carry the builder's random ``claim`` and a ``heartbeat_at`` it
    refreshes; a building row whose heartbeat is stale was left by a crashed process and
    is claimed again (its members were never committed: they are written with ``ready``).
    """

    __tablename__ = "archive_indexes"

    archive_id: Mapped[int] = mapped_column(
        ForeignKey("archives.id", ondelete="CASCADE"), primary_key=True)
    # building | ready | failed
    state: Mapped[str] = mapped_column(String(16))
    claim: Mapped[str] = mapped_column(String(32))
    # tar, tar.gz, tar.bz2, tar.xz, tar.zst, zip, gz, bz2, xz, zst, plain
    format: Mapped[str] = mapped_column(String(16), default="")
    # Why the index is incomplete (truncated, corrupt, limit reached) or failed; "" if whole.
    error: Mapped[str] = mapped_column(Text, default="")
    members: Mapped[int] = mapped_column(Integer, default=0)
    # Uncompressed bytes of all members (tar: the stream read to index it).
    total_size: Mapped[int] = mapped_column(BigInteger, default=0)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    time_create: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ArchiveMember(Base):
    """One file inside an archive (a plain or single-compressed archive has exactly one)."""

    __tablename__ = "archive_members"
    __table_args__ = (
        Index("ix_archive_members_archive_id_path", "archive_id", "path", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    archive_id: Mapped[int] = mapped_column(ForeignKey("archives.id", ondelete="CASCADE"))
    # Position in the archive (listing and search order: the order of the bytes).
    seq: Mapped[int] = mapped_column(Integer)
    # The path shown and used in URLs: normalised (no "..", no leading "/", unique).
    path: Mapped[str] = mapped_column(String(1024))
    # The name exactly as the archive stores it (zip members are opened by it).
    name: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # tar: where the member's bytes start in the uncompressed tar stream; else 0.
    offset: Mapped[int] = mapped_column(BigInteger, default=0)
    # text | binary | link | empty
    kind: Mapped[str] = mapped_column(String(8))
    # The member's own compression (syslog.2.gz inside a tar): gz, bz2, xz, zst or "".
    compression: Mapped[str] = mapped_column(String(4), default="")
    # A link's target (tar symlinks and hard links are listed, never followed).
    target: Mapped[str] = mapped_column(Text, default="")
