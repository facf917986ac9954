"""``collector serve``'s request parser: refuse a request body that waitress could not even
spool, before it reads a byte of it; spool and hash an upload's body as it arrives.

waitress spools a body bigger than ``inbuf_overflow`` to a temp file (``DATA_DIR/tmp``)
before it calls the app, so the app's own free-space check (``check_can_accept``) runs
only once the body has arrived. A body larger than the free space never gets there:
waitress's spool write fails with ENOSPC and it drops the connection without an answer.
Here the request parser looks at ``Content-Length`` as soon as the headers are in and
answers 507 with a JSON ``detail``, as the app would, when the body cannot fit beside
the storage reserve.

A body that is spooled to a file (over ``inbuf_overflow``, or chunked) goes to a
``receiving.SpoolBuffer`` from its first byte: a linkable file on the archives' disk,
hashed by a follower thread as it arrives (see ``receiving``). The task hands it to the
app as ``environ["collector.spool"]``.
"""

import json
import shutil

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.task import WSGITask
from waitress.utilities import Error

from collector.archives.uploads import receiving


class InsufficientSpool(Error):
    code = 507
    reason = "Insufficient Storage"

    tus = False  # the request was a tus one: every tus answer carries Tus-Resumable

    def to_response(self, ident=None):
        body = json.dumps({"detail": self.body}).encode()
        headers = [("Content-Length", str(len(body))), ("Content-Type", "application/json")]
        if self.tus:
            headers.append(("Tus-Resumable", "1.0.0"))
        return f"{self.code} {self.reason}", headers, body


def space_checking_channel(spool_dir, reserve):
    """A waitress channel class whose parser refuses bodies that cannot be spooled."""

    class SpaceCheckingParser(HTTPRequestParser):
        spool = None  # the SpoolBuffer of this request's body, if it has one

        def received(self, data):
            headers_before = self.headers_finished
            consumed = super().received(data)
            if not headers_before and self.headers_finished:
                self.headers_received()
            elif self.completed and self.spool is not None and not self.error:
                self.spool.complete()
            return consumed

        def headers_received(self):
            if self.error or self.body_rcv is None:
                return
            if self.content_length > self.adj.inbuf_overflow:
                free = shutil.disk_usage(spool_dir).free - reserve
                if self.content_length > free:
                    self.error = InsufficientSpool(
                        "not enough free space on the server for this request body")
                    self.error.tus = "TUS_RESUMABLE" in self.headers
                    self.completed = True
                    return
            elif not self.chunked:
                return  # a small body: waitress keeps it in memory
            length = None if self.chunked else self.content_length
            plan = receiving.plan_for(self.path or "", self.headers, length)
            self.spool = self.body_rcv.buf = receiving.SpoolBuffer(spool_dir, plan)

    class SpoolTask(WSGITask):
        def get_environment(self):
            environ = super().get_environment()
            spool = getattr(self.request, "spool", None)
            if spool is not None:
                environ[receiving.ENVIRON_KEY] = spool
            return environ

    class SpaceCheckingChannel(HTTPChannel):
        parser_class = SpaceCheckingParser
        task_class = SpoolTask

        def handle_close(self):
            # A body still arriving will never be complete: its follower stops, its
            # spool goes.
            request = self.request
            if request is not None:
                request.close()
            super().handle_close()

    return SpaceCheckingChannel

