"""tus uploads in S3 (``S3UploadStore``): an upload's accepted bytes as segment objects any
instance can reach.

An upload with ``segment_size`` S keeps its bytes ``[i*S, (i+1)*S)`` in the object
``<prefix>uploads/<key>/<i:06d>``. Which bytes count is decided by the database alone:
the committed ``offset``. Segments below ``offset // S`` are whole and never written
again; segment ``offset // S`` holds ``offset % S`` valid bytes (its tail may hold more,
left by a request whose commit never came: they are ignored, then overwritten). So no
segment list is stored and nothing is listed on the way.

A chunk is appended by rewriting the tail segment (its valid bytes, read back with one
ranged GET, followed by the new bytes) and writing whole segments after it. A PUT is
atomic and durable when it answers, so each chunk's bytes are stored before its new
offset is committed. Small chunks cost a rewrite of at most one segment each (a client
sending 1 MiB chunks into 8 MiB segments sends each byte ~4.5 times on average to S3);
tus clients send 5 MiB or more, and our own send 64 MiB.

At the last byte the archive is assembled inside the object store: a multipart upload
whose part *i* is an ``UploadPartCopy`` of segment *i* (all S ≥ 5 MiB, S3's minimum,
except the last), completed at the storage manager's vote like any archive. No byte goes
through the app. Segments are deleted after the commit, on termination, and by
``collector purge`` when no unfinished upload owns them.

Two requests of one upload are kept apart by the database row (PostgreSQL, any
instance). On SQLite (one machine by nature) each upload also has an empty local file
that is only its ``flock`` (``lock_files``).
"""

import concurrent.futures
import re
import time
import uuid

from zope.interface import implementer

from collector.archives.storage import streams
from collector.archives.storage.interfaces import IUploadStore
from collector.archives.storage.s3 import AWS_ERRORS, PART_POOL, StorageError, part_size

# Part copies in flight for one archive's assembly.
COPIES_AT_ONCE = 4
_SEGMENT = re.compile(r"([0-9a-f]{32})/([0-9]{6})")


@implementer(IUploadStore)
class S3UploadStore:
    """The segment objects of tus uploads, in the archive ``storage``'s bucket and prefix.
    ``lock_files``: a ``LocalUploadStore`` whose empty files lock the uploads (SQLite),
    or None (the database row locks them)."""

    label = "upload segments"

    def __init__(self, storage, lock_files=None):
        self.storage = storage
        self.client = storage.client
        self.bucket = storage.bucket
        self.root = storage.uploads_prefix
        self.lock_files = lock_files
        self.shared = lock_files is None

    @staticmethod
    def size_for(max_size):
        """Segments are parts of the assembled archive: ≥ 8 MiB, and few enough for S3's
        10,000 parts at the upload limit."""
        return part_size(max_size)

    def name(self, key, index):
        return f"{self.root}{key}/{index:06d}"

    def location(self, key):
        return f"s3://{self.bucket}/{self.root}{key}/"

    def owns(self, layout):
        return layout is not None

    def create(self, max_size):
        key = uuid.uuid4().hex
        if self.lock_files is not None:
            self.lock_files.create_file(key)
        return key, self.size_for(max_size)

    def lock(self, key):
        return None if self.lock_files is None else self.lock_files.lock(key)

    # --- writing

    def append(self, key, layout, offset, chunks):
        """Store ``chunks`` from ``offset`` on; returns when every byte is in a segment.
        The tail segment's valid bytes are read back only once a byte arrives (an empty
        PATCH stores nothing and reads nothing)."""
        segment_size = layout
        index, keep = divmod(offset, segment_size)
        buffer = None
        fresh_from = keep  # bytes of ``buffer`` before this are already stored
        pending = None
        try:
            for chunk in chunks:
                if not chunk:
                    continue
                if buffer is None:
                    buffer = bytearray()
                    for piece in self._get(key, index, keep) if keep else ():
                        buffer += piece
                buffer += chunk
                while len(buffer) >= segment_size:
                    data = bytes(buffer[:segment_size])
                    del buffer[:segment_size]
                    if pending is not None:
                        pending.result()
                    pending = PART_POOL.submit(self._put, key, index, data)
                    index, fresh_from = index + 1, 0
            if pending is not None:
                pending.result()
                pending = None
            if buffer is not None and len(buffer) > fresh_from:
                self._put(key, index, bytes(buffer))
        finally:
            if pending is not None:
                concurrent.futures.wait([pending])

    def _put(self, key, index, data):
        try:
            self.client.put_object(Bucket=self.bucket, Key=self.name(key, index), Body=data,
                                   ContentType="application/octet-stream")
        except AWS_ERRORS as exc:
            raise StorageError(f"storing segment {index} of an upload", exc) from None

    # --- reading

    def _get(self, key, index, length):
        """The first ``length`` bytes of one segment, ``streams.CHUNK`` at a time."""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.name(key, index),
                                          Range=f"bytes=0-{length - 1}")["Body"]
            with body:
                left = length
                while left > 0:
                    piece = body.read(min(streams.CHUNK, left))
                    if not piece:
                        raise StorageError(f"reading segment {index} of an upload",
                                           EOFError("the segment is shorter than its "
                                                    "committed bytes"))
                    left -= len(piece)
                    yield piece
        except AWS_ERRORS as exc:
            raise StorageError(f"reading segment {index} of an upload", exc) from None

    def read(self, key, layout, length):
        """The upload's first ``length`` bytes, one segment at a time."""
        segment_size, index = layout, 0
        while index * segment_size < length:
            yield from self._get(key, index, min(segment_size,
                                                 length - index * segment_size))
            index += 1

    # --- the archive

    def finish(self, manager, key, layout, length, md5, sha256):
        staged = self.assemble(key, layout, length)
        staged.md5, staged.sha256 = md5, sha256
        # The segments stay until the commit: an abort leaves the upload resumable.
        return manager.add_staged(staged)

    def assemble(self, key, segment_size, length):
        """A staged archive (an S3 multipart upload, completed at the vote) made of the
        upload's first ``length`` bytes by server-side copies of its segments."""
        storage = self.storage
        staged = storage.new_staged()
        count = -(-length // segment_size)

        def copy(index):
            size = min(segment_size, length - index * segment_size)
            try:
                answer = self.client.upload_part_copy(
                    Bucket=self.bucket, Key=storage.object_name(staged.key),
                    UploadId=staged.upload_id, PartNumber=index + 1,
                    CopySource={"Bucket": self.bucket, "Key": self.name(key, index)},
                    CopySourceRange=f"bytes=0-{size - 1}")
            except AWS_ERRORS as exc:
                raise StorageError(f"copying segment {index} into the archive",
                                   exc) from None
            return {"PartNumber": index + 1, "ETag": answer["CopyPartResult"]["ETag"]}

        try:
            staged.parts = self._in_window(copy, count)
        except BaseException:
            storage.discard(staged)
            raise
        staged.size = length
        return staged

    @staticmethod
    def _in_window(work, count):
        """``[work(0), …, work(count - 1)]``, at most ``COPIES_AT_ONCE`` running at a time:
        the part pool is shared with every upload in the process, and a 20 GB archive's
        2,500 copies must not queue ahead of other requests' parts."""
        results, running = [], []
        try:
            for index in range(count):
                if len(running) == COPIES_AT_ONCE:
                    results.append(running.pop(0).result())
                running.append(PART_POOL.submit(work, index))
            results.extend(future.result() for future in running)
            running = []
        finally:
            concurrent.futures.wait(running)
        return results

    # --- removing

    def remove(self, key):
        """Every segment of one upload (a missing one is not an error), and its lock."""
        self._delete_names(item["Key"] for item in self._list(f"{self.root}{key}/"))
        if self.lock_files is not None:
            self.lock_files.remove(key)

    def _delete_names(self, names):
        batch = []
        for name in names:
            batch.append({"Key": name})
            if len(batch) == 1000:
                self._delete_batch(batch)
                batch = []
        if batch:
            self._delete_batch(batch)

    def _delete_batch(self, batch):
        try:
            self.client.delete_objects(Bucket=self.bucket,
                                       Delete={"Objects": batch, "Quiet": True})
        except AWS_ERRORS as exc:
            raise StorageError("deleting upload segments", exc) from None

    def _list(self, prefix):
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                yield from page.get("Contents", ())
        except AWS_ERRORS as exc:
            raise StorageError("listing upload segments", exc) from None

    def keys(self, older_than=0.0):
        limit = time.time() - older_than
        return [key for key, modified in self.segment_times().items() if modified <= limit]

    def segment_times(self):
        """``{upload key: newest segment's time}`` of every upload that has segments."""
        found = {}
        start = len(self.root)
        for item in self._list(self.root):
            match = _SEGMENT.fullmatch(item["Key"][start:])
            if match:
                key, modified = match.group(1), item["LastModified"].timestamp()
                found[key] = max(found.get(key, modified), modified)
        return found
