"""A real S3-compatible server for the tests: moto's standalone server (``moto[server]``
from PyPI), a subprocess on 127.0.0.1 on a free port, stopped by its PID.

Chosen because it installs from PyPI with pip like every other test dependency, starts in
about a second and speaks the S3 REST API over HTTP (multipart uploads, ranged GETs,
listings), so boto3 is exercised exactly as against AWS or MinIO. Ceph RGW from Debian
would need a whole cluster to be bootstrapped for each run.
"""

import os
import socket
import subprocess
import sys
import threading
import time
import uuid

import boto3
import pytest

# Archives on the local disk and on S3: the upload, download, tus, inspect and purge
# tests carry this mark (the ``storage_kind`` fixture of tests/conftest.py).
on_both_storages = pytest.mark.parametrize("storage_kind", ["local", "s3"])

ACCESS_KEY, SECRET_KEY, REGION = "collector-test", "collector-test-secret", "us-east-1"
# boto3 takes credentials from these (the app has no setting for them, on purpose).
ENVIRON = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
           "AWS_DEFAULT_REGION": REGION}


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class S3Server:
    def __init__(self, log_path):
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.bucket = "collector-tests"
        self._client = None
        self._client_lock = threading.Lock()
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **ENVIRON})
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moto server did not start (log: {log_path})") from None
                time.sleep(0.1)
        self.client().create_bucket(Bucket=self.bucket)

    def client(self):
        """A boto3 client of the server, made once (making one takes ~0.2 s; a client is
        safe to share between threads)."""
        with self._client_lock:
            if self._client is None:
                self._client = boto3.session.Session(
                    aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                    region_name=REGION).client("s3", endpoint_url=self.endpoint)
            return self._client

    def settings(self, prefix=None, quota="10GiB"):
        """App settings for archives under a prefix of their own in the test bucket."""
        prefix = prefix or f"t-{uuid.uuid4().hex[:12]}"
        return {"storage.url": f"s3://{self.bucket}/{prefix}",
                "storage.endpoint_url": self.endpoint, "storage.region": REGION,
                "storage.quota": quota}

    def objects(self, prefix=""):
        """``{name: size}`` of the bucket's objects under ``prefix``."""
        found = {}
        pages = self.client().get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix)
        for page in pages:
            for item in page.get("Contents", ()):
                found[item["Key"]] = item["Size"]
        return found

    def multipart_uploads(self, prefix=""):
        answer = self.client().list_multipart_uploads(Bucket=self.bucket, Prefix=prefix)
        return answer.get("Uploads", [])

    def empty(self, prefix):
        """Delete every object and abort every multipart upload under ``prefix``."""
        client = self.client()
        for upload in self.multipart_uploads(prefix):
            client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"],
                                          UploadId=upload["UploadId"])
        names = list(self.objects(prefix))
        for start in range(0, len(names), 1000):
            client.delete_objects(Bucket=self.bucket, Delete={
                "Objects": [{"Key": name} for name in names[start:start + 1000]],
                "Quiet": True})

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
