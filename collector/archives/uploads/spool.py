"""Refuse a request body that waitress could not even spool, before it reads a byte of it.

waitress spools a body bigger than ``inbuf_overflow`` to a temp file (``DATA_DIR/tmp``)
before it calls the app, so the app's own free-space check (``check_can_accept``) runs
only once the body has arrived. A body larger than the free space never gets there:
waitress's spool write fails with ENOSPC and it drops the connection without an answer.
Here the request parser looks at ``Content-Length`` as soon as the headers are in and
answers 507 with a JSON ``detail``, as the app would, when the body cannot fit beside
the storage reserve.
"""

import json
import shutil

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.utilities import Error


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
        def received(self, data):
            headers_before = self.headers_finished
            consumed = super().received(data)
            if (not headers_before and self.headers_finished and not self.error
                    and self.content_length > self.adj.inbuf_overflow):
                free = shutil.disk_usage(spool_dir).free - reserve
                if self.content_length > free:
                    self.error = InsufficientSpool(
                        "not enough free space on the server for this request body")
                    self.error.tus = "TUS_RESUMABLE" in self.headers
                    self.completed = True
            return consumed

    class SpaceCheckingChannel(HTTPChannel):
        parser_class = SpaceCheckingParser

    return SpaceCheckingChannel

