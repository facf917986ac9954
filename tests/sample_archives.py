"""Test archives built in the tests themselves: every format the inspector reads, and the
awkward cases (nested .gz, markup, non-UTF-8 bytes, a 2 MB line, damage, ../ names, bombs)."""

import bz2
import gzip
import io
import lzma
import tarfile
import time
import zipfile

from backports import zstd

SYSLOG = b"".join(b"Dec  1 10:%02d:00 host kernel: line %d of syslog\n" % (i % 60, i)
                  for i in range(1, 1001))
APP_LOG = (b"2026-12-01 INFO starting\n"
           b"2026-12-01 ERROR connection refused to db:5432\n"
           b"<script>alert('x')</script> in a log line\n"
           b"caf\xe9 latin-1 bytes \xff\xfe here\n"
           b"2026-12-01 INFO done\n")
ROTATED = b"".join(b"old rotated line %d\n" % i for i in range(1, 301)) + b"NEEDLE in rotated\n"
BINARY = bytes(range(256)) * 16

MEMBERS = {
    "var/log/syslog": SYSLOG,
    "var/log/app.log": APP_LOG,
    "var/log/syslog.2.gz": gzip.compress(ROTATED),
    "core.bin": BINARY,
}
COMPRESSIONS = {"": "", "gz": "gz", "bz2": "bz2", "xz": "xz", "zst": "zst"}


def compress(data, compression):
    if compression == "gz":
        return gzip.compress(data)
    if compression == "bz2":
        return bz2.compress(data)
    if compression == "xz":
        return lzma.compress(data)
    if compression == "zst":
        return zstd.compress(data)
    return data


def tar(members=None, compression="", links=True):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        folder = tarfile.TarInfo("var/log")
        folder.type = tarfile.DIRTYPE
        archive.addfile(folder)
        for name, data in (members or MEMBERS).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = time.time()
            archive.addfile(info, io.BytesIO(data))
        if links:
            link = tarfile.TarInfo("var/log/current")
            link.type = tarfile.SYMTYPE
            link.linkname = "../../etc/shadow"
            archive.addfile(link)
    return compress(buffer.getvalue(), compression)


def zip_archive(members=None):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in (members or MEMBERS).items():
            archive.writestr(name, data)
    return buffer.getvalue()


def truncated_tar_gz():
    members = {f"logs/{i}.log": b"".join(b"file %d line %d\n" % (i, n) for n in range(20000))
               for i in range(4)}
    data = gzip.compress(tar(members, links=False), compresslevel=1)
    return data[:len(data) * 2 // 3]


def bomb(size=80 * 1024 * 1024):
    """A single .gz a thousand times smaller than what it inflates to (zeros)."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9) as handle:
        block = b"\x00" * (1024 * 1024)
        for _ in range(size // len(block)):
            handle.write(block)
    return out.getvalue()
