"""Reading one member: its stored bytes (seekable where the format allows), its text, lines.

Random access per format: a plain file or a plain ``.tar`` seeks straight to the member; a
``.tar.gz`` seeks through ``indexed_gzip`` with the seek points exported when the index
was built (at most ``GZIP_SPACING`` bytes are decompressed to reach any offset); a zip
member is opened by its directory entry. ``.tar.bz2``/``.tar.xz``/``.tar.zst`` and single
compressed files are read from their start (their formats have no seek points we keep), so
a member near the end of one of those costs a pass over what comes before it.
"""

import io
import os
import zipfile

import indexed_gzip

from collector.archives.inspect import formats
from collector.archives.inspect.index import GZIP_SPACING

# Bytes of a line kept for display; the rest is counted and shown as cut.
LINE_KEEP = 4096


class Window(io.RawIOBase):
    """A seekable view of ``size`` bytes of a seekable ``base`` from ``start``."""

    def __init__(self, base, start, size, closing=()):
        self._base = base
        self._start = start
        self._size = size
        self._pos = 0
        self._closing = closing

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, offset, whence=io.SEEK_SET):
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence == io.SEEK_END:
            offset += self._size
        self._pos = max(0, min(offset, self._size))
        return self._pos

    def tell(self):
        return self._pos

    def readinto(self, buffer):
        count = min(len(buffer), self._size - self._pos)
        if count <= 0:
            return 0
        self._base.seek(self._start + self._pos)
        data = self._base.read(count)
        if not data:
            raise EOFError("the archive ends inside this member (truncated)")
        buffer[:len(data)] = data
        self._pos += len(data)
        return len(data)

    def close(self):
        if not self.closed:
            for handle in (self._base, *self._closing):
                handle.close()
        super().close()


def _gzip_stream(raw, gzip_index_path):
    if os.path.exists(gzip_index_path):
        try:
            return indexed_gzip.IndexedGzipFile(fileobj=raw, index_file=gzip_index_path,
                                                drop_handles=False)
        except (OSError, indexed_gzip.ZranError, ValueError):
            raw.seek(0)  # a damaged index file: rebuilt below
    stream = indexed_gzip.IndexedGzipFile(fileobj=raw, spacing=GZIP_SPACING,
                                          drop_handles=False)
    # The seek points were lost (an index file removed by hand): build them once more.
    stream.build_full_index()
    partial = f"{gzip_index_path}.{os.getpid()}.part"
    try:
        stream.export_index(partial)
        os.replace(partial, gzip_index_path)
    except (OSError, indexed_gzip.ZranError):
        pass
    return stream


def open_stored(archive_path, index_format, member, gzip_index_path):
    """The member's bytes as stored in the archive (a nested .gz stays compressed).

    Seekable for plain files, tar, tar.gz and zip; a forward-only stream otherwise.
    """
    raw = formats.open_source(archive_path)
    try:
        if index_format == "plain":
            return Window(raw, 0, member.size)
        if index_format == "tar":
            return Window(raw, member.offset, member.size)
        if index_format == "tar.gz":
            return Window(_gzip_stream(raw, gzip_index_path), member.offset, member.size,
                          closing=(raw,))
        if index_format == "zip":
            archive = zipfile.ZipFile(raw)
            return _Closing(archive.open(member.name), (archive, raw))
        compression = index_format.removeprefix("tar.")
        stream = formats.decompressor(raw, compression)
        if index_format.startswith("tar."):
            formats.skip(stream, member.offset)
        return _Closing(io.BufferedReader(formats.Limited(stream, member.size)),
                        (stream, raw))
    except (zipfile.BadZipFile, KeyError, *formats.DAMAGE) as exc:
        raw.close()
        raise formats.InspectError(formats.damage_message(exc)) from None


class _Closing(io.RawIOBase):
    """``stream`` that closes ``others`` with itself."""

    def __init__(self, stream, others):
        self._stream = stream
        self._others = others

    def readable(self):
        return True

    def seekable(self):
        return self._stream.seekable()

    def seek(self, offset, whence=io.SEEK_SET):
        return self._stream.seek(offset, whence)

    def tell(self):
        return self._stream.tell()

    def readinto(self, buffer):
        data = self._stream.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def close(self):
        if not self.closed:
            for handle in (self._stream, *self._others):
                handle.close()
        super().close()


def open_text(archive_path, index_format, member, gzip_index_path, budget):
    """The member's content, decompressed when it is itself compressed, within ``budget``."""
    stored = open_stored(archive_path, index_format, member, gzip_index_path)
    if not member.compression:
        return io.BufferedReader(_Closing(formats.Counted(stored, budget), (stored,)),
                                 formats.CHUNK)
    inner = formats.decompressor(stored, member.compression)
    return io.BufferedReader(_Closing(formats.Counted(inner, budget), (inner, stored)),
                             formats.CHUNK)


# --- lines --------------------------------------------------------------------------------

def decode(data):
    return data.decode("utf-8", "backslashreplace")


def count_lines(stream):
    """Lines of the stream: newlines, plus one for a last line without one."""
    lines, last = 0, b"\n"
    while True:
        chunk = stream.read(formats.CHUNK)
        if not chunk:
            break
        lines += chunk.count(b"\n")
        last = chunk[-1:]
    return lines + (0 if last == b"\n" else 1)


def read_lines(stream, start, count, keep=LINE_KEEP):
    """Lines ``start`` (1-based) to ``start + count - 1``: ``(lines, more)``.

    Each line is ``(number, kept bytes, full length)``; whole chunks before ``start`` are
    skipped by counting their newlines (no per-line work), and a line longer than ``keep``
    is never held whole.
    """
    number, buffer, pos = 1, b"", 0
    while number < start:
        buffer = stream.read(formats.CHUNK)
        if not buffer:
            return [], False
        newlines = buffer.count(b"\n")
        if number + newlines < start:
            number += newlines
            continue
        pos = -1
        for _ in range(start - number):
            pos = buffer.index(b"\n", pos + 1)
        pos += 1
        number = start
    lines = []
    kept, length = bytearray(), 0
    while len(lines) < count:
        if pos >= len(buffer):
            buffer, pos = stream.read(formats.CHUNK), 0
            if not buffer:
                if length:
                    lines.append((number, bytes(kept), length))
                return lines, False
        newline = buffer.find(b"\n", pos)
        end = len(buffer) if newline < 0 else newline
        room = keep - len(kept)
        if room > 0:
            kept += buffer[pos:min(end, pos + room)]
        length += end - pos
        if newline < 0:
            pos = len(buffer)
            continue
        lines.append((number, bytes(kept), length))
        number += 1
        kept, length = bytearray(), 0
        pos = newline + 1
    more = pos < len(buffer) or bool(stream.read(1))
    return lines, more
