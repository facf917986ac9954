"""Archives in an S3-compatible object store (AWS S3, MinIO, Ceph RGW, Garage …), by boto3.

``STORAGE_URL=s3://bucket/prefix``: an archive is the object ``prefix/archives/<key[:2]>/
<key>``, its key random hex (never a client's name). Staging is an S3 multipart upload
to that object name: parts of ``PART_SIZE`` (≥ 5 MiB, S3's minimum except for the last)
are sent while the body is read and hashed (one part in flight while the next is read,
so at most two parts are in memory); nothing is visible until the upload is completed,
which the storage manager does at ``tpc_vote``, before the database commits. An abort
aborts the multipart upload; ``tpc_abort`` after the vote deletes the object. A crash
leaves at worst an unfinished multipart upload or an object with no row, both removed by
``collector purge``.

A tus upload's bytes are segment objects under ``prefix/uploads/`` (``segments.py``, which
uses this module's client helpers), assembled into the archive by server-side copies;
staging links and the inspect seek points stay on the local disk (``LocalFiles``); a
finished local file (an imported one, or a tus upload begun before segments existed) is
uploaded from there (``adopt``).

Credentials come from boto3's usual chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
``AWS_PROFILE``, an instance role …); endpoint and region from the settings or boto3's
own variables.
"""

import concurrent.futures
import errno
import io
import logging
import re
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import botocore.config
import botocore.exceptions
from zope.interface import implementer

from collector.archives.storage import streams
from collector.archives.storage.interfaces import IArchiveStorage, IDirectDownloads, IStaged
from collector.archives.storage.staging import LocalFiles

log = logging.getLogger(__name__)

MiB = 1024 * 1024
PART_SIZE = 8 * MiB
# S3 takes at most this many parts: archives above 80 GB get larger parts.
MAX_PARTS = 10_000
# Ranged reads: the first GET after a seek asks for this much, each GET that continues a
# sequential read twice the last, up to the maximum (a download is a few large GETs;
# a random access, as the inspect reader makes, costs one small one).
READ_WINDOW_MIN = 1 * MiB
READ_WINDOW_MAX = 64 * MiB
READ_BUFFER = 256 * 1024
# A forward seek this short inside the open window is read and dropped rather than
# answered by a new GET (a request costs more than this many bytes on any network).
SKIP_FORWARD = 512 * 1024
AWS_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)
# Parts are sent from these threads while the request thread reads and hashes the next.
PART_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="s3part")


_OUR_NAME = re.compile(r"([0-9a-f]{2})/([0-9a-f]{32})")


class StorageError(streams.StorageUnavailable):
    """The object store failed or refused (an ``OSError``, so that every path that
    handles a failing disk handles it too; answered 503 with ``Retry-After``)."""

    def __init__(self, what, exc):
        super().__init__(errno.EIO, f"the object store failed ({what}: {_reason(exc)})")


def _reason(exc):
    if isinstance(exc, botocore.exceptions.ClientError):
        return exc.response.get("Error", {}).get("Code", "error")
    return type(exc).__name__


def _not_found(exc):
    return isinstance(exc, botocore.exceptions.ClientError) and \
        exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}


@implementer(IStaged)
class S3Staged:
    def __init__(self, key, upload_id):
        self.key = key
        self.upload_id = upload_id
        self.parts = []
        self.size = 0
        self.md5 = None
        self.sha256 = None
        # The local file of an adopted archive (a finished tus upload): removed after
        # the commit, left alone by an abort.
        self.path = None


class StaleUpload:
    """An unfinished multipart upload found by ``stale_staging``."""

    def __init__(self, bucket, name, upload_id):
        self.bucket, self.name, self.upload_id = bucket, name, upload_id

    def __str__(self):
        return f"multipart upload s3://{self.bucket}/{self.name} ({self.upload_id})"


@implementer(IArchiveStorage, IDirectDownloads)
class S3ArchiveStorage(LocalFiles):

    def __init__(self, data_dir, client, bucket, prefix, quota):
        super().__init__(data_dir)
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.quota = quota
        self._usage = (float("-inf"), None)
        self._writable = (float("-inf"), False)
        self._lock = threading.Lock()
        # Where tus uploads keep their bytes, beside the archives (``segments.py``).
        self.uploads_prefix = f"{prefix}uploads/"

    @classmethod
    def from_settings(cls, settings):
        url = urlsplit(settings["storage.url"])
        prefix = url.path.strip("/")
        endpoint = settings.get("storage.endpoint_url") or None
        config = botocore.config.Config(
            # MinIO, Ceph and most self-hosted services want the bucket in the path.
            s3={"addressing_style": "path"} if endpoint else {},
            retries={"max_attempts": 5, "mode": "standard"},
            # Presigned URLs too: botocore would sign them with SigV2 for us-east-1 and
            # custom endpoints, which newer regions and services refuse.
            signature_version="s3v4",
            connect_timeout=10, read_timeout=60,
            # Request threads and part uploads share the client's connection pool.
            max_pool_connections=32)
        client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint, region_name=settings.get("storage.region") or None,
            config=config)
        return cls(settings["data_dir"], client, url.netloc,
                   f"{prefix}/" if prefix else "", settings["storage.quota"])

    def object_name(self, key):
        """The name of the archive ``key``'s object in the bucket."""
        return f"{self.prefix}archives/{key[:2]}/{key}"

    def location(self, key):
        return f"s3://{self.bucket}/{self.object_name(key)}"

    # --- staging and publishing (the storage manager) ---

    def new_staged(self):
        key = uuid.uuid4().hex
        try:
            created = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=self.object_name(key),
                ContentType="application/octet-stream")
        except AWS_ERRORS as exc:
            raise StorageError("starting an upload", exc) from None
        return S3Staged(key, created["UploadId"])

    def write(self, staged, chunks, max_size):
        self._send(staged, streams.hashed(staged, chunks, max_size), part_size(max_size))
        return staged

    def adopt(self, path, size, md5, sha256):
        staged = self.new_staged()
        staged.path = Path(path)
        try:
            self._send(staged, streams.file_chunks(path, size), part_size(size))
        except BaseException:
            self.discard(staged)
            raise
        staged.size, staged.md5, staged.sha256 = size, md5, sha256
        return staged

    def _send(self, staged, chunks, size):
        """Cut ``chunks`` into parts of ``size`` and upload each while the next is read.

        A part's chunks are kept as they came (views, no copy) and joined once: growing
        one buffer and slicing parts off it copied every byte twice more and held two
        more parts in memory (measured: 161 MB peak RSS against 96 MB on local disk).
        """
        pieces, held, pending = [], 0, None
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    piece = view[:size - held]
                    pieces.append(piece)
                    held += len(piece)
                    view = view[len(piece):]
                    if held == size:
                        part, pieces, held = b"".join(pieces), [], 0
                        if pending is not None:
                            pending.result()
                        pending = PART_POOL.submit(self._upload_part, staged, part)
                        del part
            if pending is not None:
                pending.result()
                pending = None
            # The last part may be short; an empty archive is one empty part.
            if pieces or not staged.parts:
                self._upload_part(staged, b"".join(pieces))
        finally:
            if pending is not None:
                concurrent.futures.wait([pending])

    def _upload_part(self, staged, data):
        number = len(staged.parts) + 1
        try:
            answer = self.client.upload_part(
                Bucket=self.bucket, Key=self.object_name(staged.key), UploadId=staged.upload_id,
                PartNumber=number, Body=data)
        except AWS_ERRORS as exc:
            raise StorageError(f"sending part {number}", exc) from None
        staged.parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    def publish(self, staged):
        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=self.object_name(staged.key), UploadId=staged.upload_id,
                MultipartUpload={"Parts": staged.parts})
        except AWS_ERRORS as exc:
            raise StorageError("completing an upload", exc) from None
        self._usage = (float("-inf"), None)  # this process's next check counts it

    def unpublish(self, staged):
        self._delete_object(staged.key)

    def discard(self, staged):
        try:
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=self.object_name(staged.key), UploadId=staged.upload_id)
        except botocore.exceptions.ClientError as exc:
            # Completed already (a failed vote), or aborted: nothing left to forget.
            if exc.response.get("Error", {}).get("Code") not in {"NoSuchUpload", "404"}:
                raise

    def release(self, staged):
        if staged.path is not None:
            staged.path.unlink(missing_ok=True)

    # --- reading, listing, deleting ---

    def _delete_object(self, key):
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.object_name(key))
        except AWS_ERRORS as exc:
            raise StorageError("deleting an object", exc) from None

    def delete(self, key):
        self._delete_object(key)
        self._usage = (float("-inf"), None)
        self.delete_derived(key)

    def _head(self, key):
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self.object_name(key))
        except botocore.exceptions.ClientError as exc:
            if _not_found(exc):
                return None
            raise StorageError("reading an object's size", exc) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise StorageError("reading an object's size", exc) from None

    def open(self, key):
        head = self._head(key)
        if head is None:
            raise FileNotFoundError(errno.ENOENT, "no such archive", self.location(key))
        raw = RangedReader(self.client, self.bucket, self.object_name(key), head["ContentLength"])
        return io.BufferedReader(raw, READ_BUFFER)

    def exists(self, key):
        return self._head(key) is not None

    def download_url(self, key, disposition, expires):
        # A HEAD first: a missing object is our 404 (and a failing store our 503), not
        # an XML error page at the end of a redirect. Signing itself is local.
        if self._head(key) is None:
            raise FileNotFoundError(errno.ENOENT, "no such archive", self.location(key))
        return self.client.generate_presigned_url("get_object", ExpiresIn=expires, Params={
            "Bucket": self.bucket, "Key": self.object_name(key),
            "ResponseContentDisposition": disposition,
            "ResponseContentType": "application/octet-stream"})

    def _objects(self, prefix=None):
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}archives/" if prefix is None else prefix)
        for page in pages:
            yield from page.get("Contents", ())

    def _archives(self):
        """``(key, size, last modified)`` of each archive. Only names this backend makes:
        anything else under the prefix is not ours to call an orphan (purge deletes what
        ``keys`` lists and no row references) or to count."""
        start = len(f"{self.prefix}archives/")
        for item in self._objects():
            match = _OUR_NAME.fullmatch(item["Key"][start:])
            if match and match.group(1) == match.group(2)[:2]:
                yield match.group(2), item["Size"], item["LastModified"].timestamp()

    def keys(self, older_than=0.0):
        # An object's time is when its multipart upload was completed: the vote.
        limit = time.time() - older_than
        for key, _, modified in self._archives():
            if modified <= limit:
                yield key

    # A listing costs a request per 1000 objects: usage is cached like the disk probe.
    USAGE_TTL = 5.0
    WRITABLE_TTL = 5.0

    def usage(self):
        checked, used = self._usage
        if used is None or time.monotonic() - checked >= self.USAGE_TTL:
            with self._lock:
                # Uploads in progress take room in the bucket too.
                used = sum(size for _, size, _ in self._archives()) + sum(
                    item["Size"] for item in self._objects(self.uploads_prefix))
                self._usage = (time.monotonic(), used)
        return {"total": self.quota, "used": used, "free": max(0, self.quota - used)}

    def writable(self):
        checked, result = self._writable
        if time.monotonic() - checked < self.WRITABLE_TTL:
            return result
        probe = f"{self.prefix}tmp/.probe-{uuid.uuid4().hex}"
        try:
            self.client.put_object(Bucket=self.bucket, Key=probe, Body=b"ok")
            self.client.delete_object(Bucket=self.bucket, Key=probe)
            result = True
        except AWS_ERRORS:
            log.warning("the object store s3://%s is not writable", self.bucket,
                        exc_info=True)
            result = False
        self._writable = (time.monotonic(), result)
        return result

    # --- what a crash leaves ---

    def stale_staging(self, older_than):
        yield from super().stale_staging(older_than)
        limit = time.time() - older_than
        pages = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}archives/")
        for page in pages:
            for upload in page.get("Uploads", ()):
                if upload["Initiated"].timestamp() <= limit:
                    yield StaleUpload(self.bucket, upload["Key"], upload["UploadId"])

    def remove_stale(self, item):
        if isinstance(item, StaleUpload):
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=item.name,
                                                   UploadId=item.upload_id)
            except botocore.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                    raise
        else:
            super().remove_stale(item)


def part_size(largest):
    """``PART_SIZE``, or whole MiB large enough that ``largest`` bytes fit in
    ``MAX_PARTS`` parts."""
    needed = -(-largest // MAX_PARTS)
    return max(PART_SIZE, -(-needed // MiB) * MiB)


class RangedReader(io.RawIOBase):
    """A seekable, read-only view of one object, read by ranged GETs.

    Each GET's body is streamed (never held whole); a read that continues where the last
    one stopped keeps reading the open body, and asks for a window twice as large when
    that ends; a seek elsewhere closes it and the next read starts a small window there.
    """

    def __init__(self, client, bucket, name, size):
        self._client, self._bucket, self._name, self.size = client, bucket, name, size
        self._pos = 0
        self._body = None
        self._body_pos = 0
        self._body_end = 0
        self._window = READ_WINDOW_MIN
        self.requests = 0  # GETs made (the measurements read it)

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self._pos

    def seek(self, offset, whence=io.SEEK_SET):
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence == io.SEEK_END:
            offset += self.size
        if offset < 0:
            raise ValueError("negative seek position")
        self._pos = offset
        return self._pos

    def _open_window(self):
        if self._body is not None:
            self._body.close()
            self._body = None
        sequential = self._body_end == self._pos and self.requests
        # A read that has gone on sequentially through the largest window (a whole
        # download, an index pass) asks for the rest of the object in one GET: the body
        # is streamed either way, and it saves a request per 64 MiB (on servers that
        # pay for each GET by the object's size, as moto does, far more).
        at_most = self.size if sequential and self._window >= READ_WINDOW_MAX else None
        self._window = min(self._window * 2, READ_WINDOW_MAX) if sequential \
            else READ_WINDOW_MIN
        end = (at_most or min(self._pos + self._window, self.size)) - 1
        try:
            answer = self._client.get_object(Bucket=self._bucket, Key=self._name,
                                             Range=f"bytes={self._pos}-{end}")
        except AWS_ERRORS as exc:
            raise StorageError("reading an archive", exc) from None
        self.requests += 1
        self._body, self._body_pos, self._body_end = answer["Body"], self._pos, end + 1

    def readinto(self, buffer):
        want = min(len(buffer), self.size - self._pos)
        if want <= 0:
            return 0
        ahead = self._pos - self._body_pos
        if self._body is not None and 0 < ahead <= SKIP_FORWARD and \
                self._pos < self._body_end:
            self._skip(ahead)
        if self._body is None or self._body_pos != self._pos or \
                self._body_pos >= self._body_end:
            self._open_window()
        try:
            data = self._body.read(min(want, self._body_end - self._body_pos))
        except AWS_ERRORS as exc:
            raise StorageError("reading an archive", exc) from None
        if not data:
            raise StorageError("reading an archive", EOFError("the object ended early"))
        buffer[:len(data)] = data
        self._pos += len(data)
        self._body_pos += len(data)
        return len(data)

    def _skip(self, count):
        try:
            while count > 0:
                data = self._body.read(min(count, READ_BUFFER))
                if not data:
                    return
                count -= len(data)
                self._body_pos += len(data)
        except AWS_ERRORS:
            self._body.close()
            self._body = None

    def close(self):
        if self._body is not None:
            self._body.close()
            self._body = None
        super().close()
