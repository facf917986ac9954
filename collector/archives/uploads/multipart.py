"""A streaming multipart/form-data reader: yields the bytes of one file field.

The whole body is never held in memory; the reader keeps a window of one chunk plus the
boundary's length, so it can tell a boundary split across two reads from file content.
"""

import email.message
import email.parser
import email.policy

READ = 1024 * 1024


class MultipartError(ValueError):
    pass


def boundary_of(content_type):
    """The boundary parameter of a ``multipart/form-data; boundary=…`` header."""
    message = email.message.Message()
    message["Content-Type"] = content_type
    boundary = message.get_param("boundary") or ""
    if not boundary or len(boundary) > 200:
        raise MultipartError("multipart body without a valid boundary")
    return boundary.encode("latin-1")


def _headers(raw):
    message = email.parser.BytesHeaderParser(policy=email.policy.HTTP).parsebytes(raw + b"\r\n")
    disposition = message.get("Content-Disposition")
    if disposition is None:
        raise MultipartError("a multipart part has no Content-Disposition")
    params = dict(disposition.params)
    filename = params.get("filename")
    if filename:
        # Browsers and curl ≥ 7.81 escape these three characters in the quoted name.
        filename = filename.replace("%22", '"').replace("%0D", "\r").replace("%0A", "\n")
    return params.get("name"), filename


class FilePart:
    """Finds the part named ``field`` in ``stream`` and iterates over its content."""

    def __init__(self, stream, boundary, field="file", remaining=None):
        self.stream = stream
        self.delimiter = b"\r\n--" + boundary
        self.field = field
        self.remaining = remaining
        self.filename = None
        # A leading CRLF lets the first boundary look like every later one.
        self.buffer = b"\r\n"
        self._seek_to_file()

    def _read(self):
        size = READ if self.remaining is None else min(READ, self.remaining)
        if size <= 0:
            return b""
        data = self.stream.read(size)
        if self.remaining is not None:
            self.remaining -= len(data)
        return data

    def _fill(self, needed):
        while len(self.buffer) < needed:
            data = self._read()
            if not data:
                return False
            self.buffer += data
        return True

    def _skip_to_delimiter(self):
        """Discard bytes up to and including the next delimiter."""
        while True:
            index = self.buffer.find(self.delimiter)
            if index >= 0:
                self.buffer = self.buffer[index + len(self.delimiter):]
                return
            self.buffer = self.buffer[-len(self.delimiter):]
            if not self._fill(len(self.buffer) + 1):
                raise MultipartError("multipart body ended before its closing boundary")

    def _seek_to_file(self):
        self._skip_to_delimiter()
        while True:
            self._fill(2)
            if self.buffer.startswith(b"--"):
                raise MultipartError(f"multipart body has no {self.field!r} field")
            # Part headers end with an empty line; they are small (cap them).
            while (end := self.buffer.find(b"\r\n\r\n")) < 0:
                if len(self.buffer) > 64 * 1024 or not self._fill(len(self.buffer) + 1):
                    raise MultipartError("malformed multipart part headers")
            raw, self.buffer = self.buffer[:end], self.buffer[end + 4:]
            name, filename = _headers(raw.lstrip(b"\r\n"))
            if name == self.field:
                self.filename = filename or ""
                return
            self._skip_to_delimiter()

    def __iter__(self):
        keep = len(self.delimiter)
        while True:
            index = self.buffer.find(self.delimiter)
            if index >= 0:
                if index:
                    yield self.buffer[:index]
                self.buffer = b""
                return
            if len(self.buffer) > keep:
                yield self.buffer[:-keep]
                self.buffer = self.buffer[-keep:]
            data = self._read()
            if not data:
                raise MultipartError("multipart body ended inside the file (client gone?)")
            self.buffer = self.buffer + data if len(self.buffer) else data
