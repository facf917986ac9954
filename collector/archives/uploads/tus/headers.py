"""The tus 1.0.0 protocol itself: version, extensions, the request headers it parses and
the status codes it answers beyond the usual ones."""

import base64
import binascii
import datetime as dt
import email.utils
import hashlib

from collector.archives import filenames
from collector.errors import BadRequest, DomainError
from collector.numbers import parse_natural

VERSION = "1.0.0"
EXTENSIONS = ("creation", "creation-with-upload", "creation-defer-length", "termination",
              "checksum", "expiration", "concatenation")
CHECKSUMS = {"sha1": hashlib.sha1, "md5": hashlib.md5, "sha256": hashlib.sha256}
CONTENT_TYPE = "application/offset+octet-stream"


class Gone(DomainError):
    status = 410


class PreconditionFailed(DomainError):
    status = 412


class UnsupportedMediaType(DomainError):
    status = 415


class ChecksumMismatch(DomainError):
    status = 460


def parse_length(value, name):
    """A non-negative integer header, or None when absent."""
    if value is None:
        return None
    number = parse_natural(value.strip(" \t"))
    if number is None:
        raise BadRequest(f"{name} must be a non-negative integer of ASCII digits")
    return number


def parse_metadata(header):
    """``key base64,key2 base64,key3`` → {key: str}; 400 when malformed."""
    header = (header or "").strip()
    if len(header) > 4096:
        raise BadRequest("Upload-Metadata is longer than 4096 characters")
    result = {}
    for pair in filter(None, (part.strip() for part in header.split(","))):
        key, _, value = pair.partition(" ")
        # Keys are printable ASCII (tus 1.0); nothing else is stored or echoed in HEAD.
        if not key or not key.isascii() or not key.isprintable() or " " in value.strip() \
                or key in result:
            raise BadRequest(f"Upload-Metadata: malformed pair {pair[:40]!r}")
        try:
            result[key] = base64.b64decode(value.strip(), validate=True).decode(
                "utf-8", "replace")
        except (binascii.Error, ValueError):
            raise BadRequest(f"Upload-Metadata: the value of {key} is not base64") from None
    return result


def file_name(metadata):
    """The upload's name, sanitised now: it is shown (audit log) before it is an archive."""
    return filenames.sanitise_name(metadata.get("filename") or metadata.get("name"))


def file_type(metadata):
    return filenames.clean_label(metadata.get("filetype") or metadata.get("type"))


def parse_checksum(header):
    """``Upload-Checksum: <algorithm> <base64 digest>`` → (name, digest) or None."""
    if header is None:
        return None
    name, _, value = header.strip().partition(" ")
    if name not in CHECKSUMS:
        raise BadRequest(f"Upload-Checksum: unsupported algorithm {name!r} "
                         f"(supported: {', '.join(CHECKSUMS)})")
    try:
        digest = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("Upload-Checksum: the digest is not base64") from None
    return name, digest


def http_date(value):
    return email.utils.format_datetime(value.astimezone(dt.UTC), usegmt=True)
