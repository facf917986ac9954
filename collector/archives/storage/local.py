"""``LocalArchiveStorage``: finished archives as files on the local disk,
``archives/<key[:2]>/<key>``."""

import os
import shutil
import time
import uuid
from pathlib import Path

from zope.interface import implementer

from collector.archives.storage import streams
from collector.archives.storage.interfaces import IArchiveStorage
from collector.archives.storage.spooled import SpooledBody
from collector.archives.storage.staging import LocalFiles, StagedFile, fsync_dir


@implementer(IArchiveStorage)
class LocalArchiveStorage(LocalFiles):
    """Archives on the local filesystem: ``archives/<key[:2]>/<key>``; staged in
    ``tmp/`` (same filesystem), published by an atomic rename."""

    def __init__(self, data_dir):
        super().__init__(data_dir)
        self.archives = self.root / "archives"
        self.archives.mkdir(parents=True, exist_ok=True)

    def path(self, key):
        return self.archives / key[:2] / key

    def location(self, key):
        """Where the archive is, for messages (purge)."""
        return str(self.path(key))

    def new_staged(self):
        key = uuid.uuid4().hex
        return StagedFile(key, self.staging / f"{key}.part")

    def write(self, staged, chunks, max_size):
        if isinstance(chunks, SpooledBody):
            return self._write_spooled(staged, chunks, max_size)
        return streams.write_stream(staged, chunks, max_size)

    @staticmethod
    def _write_spooled(staged, body, max_size):
        """A body the server spooled and hashed: the spool itself becomes the staged file
        (a second name, no copy) when it is exactly the body, else its range is copied in
        the kernel."""
        if body.size > max_size:
            raise streams.TooLarge(body.size)
        if not body.link(staged.path):
            with open(staged.path, "wb", buffering=0) as out:
                body.copy_to(out.fileno(), 0)
                os.fsync(out.fileno())
        staged.size, staged.md5, staged.sha256 = body.size, body.md5, body.sha256
        return staged

    def adopt(self, path, size, md5, sha256):
        staged = StagedFile(uuid.uuid4().hex, Path(path), adopted=True)
        staged.size, staged.md5, staged.sha256 = size, md5, sha256
        return staged

    def publish(self, staged):
        target = self.path(staged.key)
        target.parent.mkdir(exist_ok=True)
        os.rename(staged.path, target)
        fsync_dir(target.parent)

    def unpublish(self, staged):
        if staged.adopted:
            os.rename(self.path(staged.key), staged.path)
        else:
            self.path(staged.key).unlink(missing_ok=True)

    def discard(self, staged):
        if not staged.adopted:
            staged.path.unlink(missing_ok=True)

    def release(self, staged):
        pass  # the staged name became the archive's at publish

    def delete(self, key):
        self.path(key).unlink(missing_ok=True)
        # What was derived from the archive goes with it.
        self.delete_derived(key)

    def open(self, key):
        return open(self.path(key), "rb")

    def exists(self, key):
        return self.path(key).is_file()

    def keys(self, older_than=0.0):
        # ctime, not mtime: the rename (or the importer's hard link) that put the file in
        # place changes the inode's ctime; its mtime may be far older.
        limit = time.time() - older_than
        for child in self.archives.glob("??/*"):
            if child.is_file() and child.stat().st_ctime <= limit:
                yield child.name

    def usage(self):
        total, used, free = shutil.disk_usage(self.archives)
        return {"total": total, "used": used, "free": free}

    # Health checks come often (load balancers); a disk's state is re-probed every 5 s.
    WRITABLE_TTL = 5.0
    _writable = (float("-inf"), False)

    def writable(self):
        checked, result = self._writable
        if time.monotonic() - checked < self.WRITABLE_TTL:
            return result
        probe = self.staging / f".probe-{uuid.uuid4().hex}"
        try:
            probe.write_bytes(b"ok")
            probe.unlink()
            result = True
        except OSError:
            result = False
        self._writable = (time.monotonic(), result)
        return result
