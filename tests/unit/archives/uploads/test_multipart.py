"""The streaming multipart reader: boundaries split across reads, odd inputs."""

import io
import os

import pytest

from collector.archives.uploads import multipart
from collector.archives.uploads.multipart import FilePart, MultipartError, boundary_of


def _body(content, boundary="b0und", name="file", filename="x.log", before=b""):
    return (before + f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
            f"filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            .encode() + content + f"\r\n--{boundary}--\r\n".encode())


@pytest.mark.parametrize("read", [1, 7, 64, 4096])
def test_boundary_split_anywhere(monkeypatch, read):
    monkeypatch.setattr(multipart, "READ", read)
    content = os.urandom(5000) + b"\r\n--b0un" + os.urandom(100)
    stream = io.BytesIO(_body(content))
    part = FilePart(stream, b"b0und", remaining=len(stream.getvalue()))
    assert b"".join(part) == content and part.filename == "x.log"


def test_skips_other_fields():
    other = b"--b0und\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n"
    part = FilePart(io.BytesIO(_body(b"data", before=other)), b"b0und")
    assert b"".join(part) == b"data"


def test_escaped_quotes_in_names():
    part = FilePart(io.BytesIO(_body(b"d", filename="a %22q%22.log")), b"b0und")
    assert part.filename == 'a "q".log'


@pytest.mark.parametrize("body", [
    b"", b"garbage without boundary", b"--b0und\r\nno headers end",
    b"--b0und\r\nX-Other: 1\r\n\r\n\r\n--b0und--\r\n",
    b"--b0und\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n--b0und--\r\n"])
def test_malformed(body):
    with pytest.raises(MultipartError):
        list(FilePart(io.BytesIO(body), b"b0und"))


def test_truncated_file_content():
    body = _body(b"12345")[:-20]
    with pytest.raises(MultipartError):
        list(FilePart(io.BytesIO(body), b"b0und"))


def test_boundary_parameter():
    assert boundary_of('multipart/form-data; boundary="a b"') == b"a b"
    with pytest.raises(MultipartError):
        boundary_of("multipart/form-data")
