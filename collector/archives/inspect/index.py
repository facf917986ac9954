"""Building the member index: one pass over the archive, bounded, tolerant of damage.

``build(path, name, limits, gzip_index_path, progress)`` returns an ``IndexResult``: the
format, the members found, and an error when the archive is damaged or a limit stopped the
pass (the members before the damage are still listed). For a ``.tar.gz`` the pass goes
through ``indexed_gzip``, which records a seek point every ``GZIP_SPACING`` bytes of output;
those are exported to ``gzip_index_path`` so that any member can later be reached by
decompressing at most that much (see docs/staff-guide.md, "Looking inside archives").
"""

import dataclasses
import datetime as dt
import io
import os
import tarfile
import zipfile

import indexed_gzip

from collector.archives import filenames
from collector.archives.inspect import formats
from collector.archives.inspect.formats import Budget, InspectError

HEAD = 8192
# Compressed bytes read to judge a compressed member's content (text or binary).
COMPRESSED_HEAD = 64 * 1024
# One seek point per this much uncompressed output: a point costs 32 KiB in the index file,
# and reaching a byte decompresses half of this on average (~10 ms at 400 MB/s).
GZIP_SPACING = 4 * 1024 * 1024
MAX_PATH_BYTES = 1000


@dataclasses.dataclass
class Limits:
    max_bytes: int
    max_ratio: float
    max_members: int


@dataclasses.dataclass
class Member:
    seq: int
    path: str
    name: str
    size: int
    mtime: dt.datetime | None
    offset: int = 0
    kind: str = "text"
    compression: str = ""
    target: str = ""


@dataclasses.dataclass
class IndexResult:
    format: str
    members: list
    error: str = ""
    total_size: int = 0


class _Paths:
    """Display paths: normalised (no ``..``, no leading ``/``, no control or invisible
    characters: ``filenames.member_parts``), short enough, unique."""

    def __init__(self):
        self.taken = set()

    def __call__(self, name):
        path = "/".join(filenames.member_parts(name)) or "unnamed"
        while len(path.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
            path = path[:-10]
        candidate, n = path, 1
        while candidate in self.taken:
            n += 1
            candidate = f"{path} ({n})"
        self.taken.add(candidate)
        return candidate


def kind_of(head, size):
    """``(kind, compression)`` of a member from its first bytes."""
    if size == 0:
        return "empty", ""
    compression = formats.compression_of(head)
    if compression:
        try:
            with formats.decompressor(io.BytesIO(head), compression) as stream:
                inner = stream.read(HEAD)
        except formats.DAMAGE:
            inner = b""
        if inner:
            return ("binary" if formats.looks_binary(inner) else "text"), compression
        return "binary", compression
    return ("binary" if formats.looks_binary(head[:HEAD]) else "text"), ""


def _mtime(seconds):
    if seconds is None:
        return None
    try:
        return dt.datetime.fromtimestamp(seconds, dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None


def build(path, name, limits, gzip_index_path=None, progress=None):
    kind, compression = formats.sniff(path)
    result = IndexResult(formats.format_name(kind, compression), [])
    compressed_size = formats.source_size(path)
    budget = Budget(limits.max_bytes, limits.max_ratio, compressed_size, "indexing")
    try:
        if kind == "tar":
            _tar(path, compression, result, budget, limits, gzip_index_path, progress)
        elif kind == "zip":
            _zip(path, result, limits, progress)
        elif kind == "single":
            _single(path, name, compression, result, budget)
        else:
            _plain(path, name, result)
    except formats.Bomb as exc:
        raise InspectError(str(exc)) from None
    except formats.TooMuchOutput as exc:
        result.error = str(exc)
    except _TooMany:
        result.error = (f"only the first {limits.max_members} members are listed "
                        "(the configured limit)")
    except formats.DAMAGE as exc:
        if not result.members:
            raise InspectError(formats.damage_message(exc)) from None
        result.error = formats.damage_message(exc)
    return result


class _TooMany(Exception):
    pass


def _add(result, limits, member, progress):
    if len(result.members) >= limits.max_members:
        raise _TooMany()
    result.members.append(member)
    result.total_size += member.size
    if progress is not None and len(result.members) % 500 == 0:
        progress()


def _tar(path, compression, result, budget, limits, gzip_index_path, progress):
    paths = _Paths()
    raw = formats.open_source(path)
    seekable = None
    try:
        if compression == "gz":
            seekable = indexed_gzip.IndexedGzipFile(fileobj=raw, spacing=GZIP_SPACING,
                                                    drop_handles=False)
            stream, mode = seekable, "r:"
        elif compression:
            stream, mode = formats.decompressor(raw, compression), "r|"
        else:
            stream, mode = raw, "r:"
        with tarfile.open(fileobj=stream, mode=mode) as tar:
            try:
                for info in tar:
                    # Where the pass stands in the uncompressed stream: the bomb guard.
                    budget.spend(max(0, tar.offset - budget.produced))
                    if not (info.isreg() or info.issym() or info.islnk()):
                        continue
                    # Not UTF-8 is common (latin-1 names): kept readable, never lost.
                    member = Member(len(result.members), paths(info.name),
                                    filenames.stored_text(info.name),
                                    info.size if info.isreg() else 0, _mtime(info.mtime),
                                    info.offset_data)
                    if info.isreg():
                        head = tar.extractfile(info).read(COMPRESSED_HEAD)
                        member.kind, member.compression = kind_of(head, info.size)
                    else:
                        member.kind, member.target = "link", filenames.stored_text(info.linkname)
                    _add(result, limits, member, progress)
            finally:
                if seekable is not None and gzip_index_path is not None:
                    _export(seekable, gzip_index_path)
    finally:
        if seekable is not None:
            seekable.close()
        raw.close()


def _export(seekable, target):
    partial = f"{target}.part"
    try:
        seekable.export_index(partial)
        os.replace(partial, target)
    except (OSError, indexed_gzip.ZranError):
        # No seek points: members are still read, from the start of the stream.
        if os.path.exists(partial):
            os.unlink(partial)


def _zip(path, result, limits, progress):
    paths = _Paths()
    raw = formats.open_source(path)
    try:
        archive = zipfile.ZipFile(raw)
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raw.close()
        raise InspectError(f"the zip archive is damaged: {exc}") from None
    with raw, archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            try:
                mtime = dt.datetime(*info.date_time, tzinfo=dt.UTC)
            except ValueError:
                mtime = None
            member = Member(len(result.members), paths(info.filename), info.filename,
                            info.file_size, mtime)
            if info.flag_bits & 0x1:
                member.kind = "binary"  # encrypted: nothing to show
            else:
                try:
                    with archive.open(info) as handle:
                        head = handle.read(COMPRESSED_HEAD)
                except (zipfile.BadZipFile, NotImplementedError, *formats.DAMAGE):
                    head = b"\x00"
                member.kind, member.compression = kind_of(head, info.file_size)
            _add(result, limits, member, progress)


def _strip_suffix(name, compression):
    suffixes = {"gz": (".gz", ".gzip"), "bz2": (".bz2",), "xz": (".xz",), "zst": (".zst",)}
    lower = name.lower()
    for suffix in suffixes[compression]:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[:-len(suffix)]
    return name


def _single(path, name, compression, result, budget):
    size, head = 0, b""
    with formats.open_source(path) as raw, formats.decompressor(raw, compression) as stream:
        while True:
            data = stream.read(formats.CHUNK)
            if not data:
                break
            if len(head) < HEAD:
                head += data[:HEAD - len(head)]
            size += len(data)
            budget.spend(len(data))
    kind = "empty" if size == 0 else ("binary" if formats.looks_binary(head) else "text")
    member_name = _strip_suffix(name, compression)
    result.members.append(Member(0, _Paths()(member_name), member_name, size,
                                 _mtime(formats.source_mtime(path)), kind=kind))
    result.total_size = size


def _plain(path, name, result):
    size = formats.source_size(path)
    with formats.open_source(path) as raw:
        head = raw.read(HEAD)
    kind = "empty" if size == 0 else ("binary" if formats.looks_binary(head) else "text")
    result.members.append(Member(0, _Paths()(name), name, size,
                                 _mtime(formats.source_mtime(path)), kind=kind))
    result.total_size = size
