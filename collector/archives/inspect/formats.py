"""What an archive is, by its bytes (never by its name), and bounded decompressing readers.

Detection reads magic numbers: a compression layer (gzip, bzip2, xz, zstd) first, then a
tar header (``ustar`` at offset 257, or a valid old-style header checksum) or a zip
signature in what is left. Everything that is none of those is a plain file.

Every decompressing read goes through ``Budget``: a count of bytes produced that raises
``TooMuchOutput`` past a limit, and ``Bomb`` when the output outgrows the input by more
than the allowed ratio — so a 40 kB file that inflates to 40 GB stops after a few MB.
"""

import bz2
import gzip
import io
import lzma
import os
import tarfile
import zlib

try:
    from compression import zstd  # Python 3.14+
except ImportError:
    from backports import zstd

CHUNK = 1024 * 1024
# Below this much output the ratio is not judged: a small file of repeated lines may
# legitimately compress 1000:1.
RATIO_GRACE = 64 * 1024 * 1024

MAGIC = [
    (b"\x1f\x8b", "gz"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zst"),
]
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


class InspectError(Exception):
    """The archive cannot be read (corrupt, truncated, unsupported): a message for staff."""


class TooMuchOutput(InspectError):
    pass


class Bomb(InspectError):
    pass


class Budget:
    """Bytes a reader may produce: ``limit`` in all, and ``ratio`` times its input."""

    def __init__(self, limit, ratio=None, compressed_size=None, what="reading"):
        self.limit = limit
        self.ratio = ratio
        self.compressed_size = compressed_size
        self.what = what
        self.produced = 0

    def spend(self, count):
        self.produced += count
        if self.produced > self.limit:
            raise TooMuchOutput(f"{self.what} stopped after {self.limit} uncompressed bytes "
                                "(the configured limit)")
        if (self.ratio and self.compressed_size and self.produced > RATIO_GRACE
                and self.produced > self.ratio * self.compressed_size):
            raise Bomb(f"{self.what} stopped: the data expands more than {self.ratio:g} "
                       "times (a decompression bomb?)")


def compression_of(head):
    for magic, name in MAGIC:
        if head.startswith(magic):
            return name
    return ""


def is_tar_header(block):
    if len(block) < 512:
        return False
    if block[257:262] == b"ustar":
        return True
    # Old (v7) tar: no magic, but a header checksum over the block.
    try:
        stored = int(block[148:156].replace(b"\x00", b" ").strip() or b"-1", 8)
    except ValueError:
        return False
    computed = sum(block[:148]) + 8 * 32 + sum(block[156:512])
    return stored == computed and block[0] != 0


def decompressor(fileobj, compression):
    """A binary stream of ``fileobj`` decompressed (``fileobj`` itself when ""), unbuffered
    enough that closing it leaves ``fileobj`` to the caller."""
    if compression == "gz":
        return gzip.GzipFile(fileobj=fileobj, mode="rb")
    if compression == "bz2":
        return bz2.BZ2File(fileobj, mode="rb")
    if compression == "xz":
        return lzma.LZMAFile(fileobj, mode="rb")
    if compression == "zst":
        # Python 3.14's compression.zstd: frames read across, truncation is an EOFError.
        return zstd.ZstdFile(fileobj, mode="rb")
    return fileobj


# The exceptions each library raises for damaged input; turned into InspectError.
DAMAGE = (EOFError, zlib.error, OSError, lzma.LZMAError, zstd.ZstdError,
          tarfile.TarError, ValueError)


def damage_message(exc):
    if isinstance(exc, EOFError) or "unexpected end" in str(exc):
        return "the archive is truncated (it ends before its data does)"
    text = str(exc) or type(exc).__name__
    return f"the archive is damaged: {text}"


class Limited(io.RawIOBase):
    """At most ``size`` bytes of ``stream`` from where it stands, spending ``budget``."""

    def __init__(self, stream, size, budget=None):
        self._stream = stream
        self._left = size
        self._budget = budget

    def readable(self):
        return True

    def readinto(self, buffer):
        if self._left <= 0:
            return 0
        data = self._stream.read(min(len(buffer), self._left))
        if not data:
            raise EOFError("member ends early")
        if self._budget is not None:
            self._budget.spend(len(data))
        self._left -= len(data)
        buffer[:len(data)] = data
        return len(data)

    def drain(self):
        """Skip what the reader left of this member (the stream then stands after it)."""
        skip(self._stream, self._left)
        self._left = 0


class Counted(io.RawIOBase):
    """Every byte read from ``stream`` is spent from ``budget`` (decompressed output)."""

    def __init__(self, stream, budget):
        self._stream = stream
        self._budget = budget

    def readable(self):
        return True

    def readinto(self, buffer):
        data = self._stream.read(len(buffer))
        self._budget.spend(len(data))
        buffer[:len(data)] = data
        return len(data)

    # Seeking (where the stream can) costs nothing from the budget: a seekable member
    # is read from its seek point, never inflated to get there.
    def seekable(self):
        return self._stream.seekable()

    def seek(self, offset, whence=io.SEEK_SET):
        return self._stream.seek(offset, whence)

    def tell(self):
        return self._stream.tell()

    def close(self):
        if not self.closed:
            self._stream.close()
        super().close()


def skip(stream, count):
    """Read and drop ``count`` bytes (a stream that cannot seek)."""
    while count > 0:
        data = stream.read(min(CHUNK, count))
        if not data:
            raise EOFError("stream ends early")
        count -= len(data)


class Source:
    """An archive's bytes wherever the storage keeps them: ``open()`` gives a new readable,
    seekable binary file (local: the file; S3: ranged GETs with a read-ahead buffer);
    ``size`` and ``mtime`` are the row's. A plain path works wherever a Source does."""

    def __init__(self, opener, size, mtime=None):
        self.open, self.size, self.mtime = opener, size, mtime


def open_source(source):
    if isinstance(source, Source):
        return source.open()
    return open(source, "rb")


def source_size(source):
    return source.size if isinstance(source, Source) else os.path.getsize(source)


def source_mtime(source):
    """Seconds since the epoch, or None."""
    if isinstance(source, Source):
        return source.mtime.timestamp() if source.mtime is not None else None
    return os.path.getmtime(source)


def sniff(path):
    """``(format, compression)`` of the archive at ``path`` (a path or a ``Source``).

    format: tar, zip, single (one compressed file) or plain.
    """
    with open_source(path) as raw:
        head = raw.read(8)
        if head.startswith(ZIP_MAGIC):
            return "zip", ""
        compression = compression_of(head)
        raw.seek(0)
        if not compression:
            return ("tar", "") if is_tar_header(raw.read(512)) else ("plain", "")
        try:
            with decompressor(raw, compression) as stream:
                block = stream.read(512)
        except DAMAGE as exc:
            raise InspectError(damage_message(exc)) from None
        return ("tar" if is_tar_header(block) else "single"), compression


def format_name(kind, compression):
    if kind == "tar":
        return "tar" + (f".{compression}" if compression else "")
    if kind == "single":
        return compression
    return kind


# A member is text when its first bytes hold no NUL and few other control characters.
TEXT_CONTROLS = set(range(32)) - {9, 10, 12, 13, 27}


def looks_binary(head):
    if not head:
        return False
    if b"\x00" in head:
        return True
    controls = sum(1 for byte in head if byte in TEXT_CONTROLS)
    return controls > len(head) // 100
