"""Names that come from clients or from inside archives, made safe in one place.

A name is never part of a path on disk (those are built from ids): it is metadata shown on
pages and sent back in ``Content-Disposition``. So the rules here are about showing and
saving it: no path, no control characters, nothing invisible that makes one name look
like another (``evil\\u202egol.exe`` shows as ``evilexe.log``), compatibility forms folded
(a fullwidth ``／`` is a ``/``), and short enough for any file system once staff save it.
"""

import re
import unicodedata

# What a downloaded file can be called on every common file system, in UTF-8 bytes.
MAX_NAME_BYTES = 255
# Kept whole when a long name is cut: ``.tar.gz``, ``.log.1.zst``.
MAX_SUFFIX_CHARS = 32
DEFAULT_NAME = "archive"

# Characters Windows and shells treat specially, and lookalikes of the two slashes.
_RESERVED = re.compile(r"[/\\:*?\"<>|\u2215\u2044\u29f8\u29f9\u2216]")
_SPACES = re.compile(r"\s+")
_SUFFIX = re.compile(r"(\.[A-Za-z0-9]{1,10}){1,3}$")


def _visible(name):
    """Lone surrogates (undecodable bytes) as U+FFFD; invisible format characters (bidi
    overrides, zero-width spaces and joiners, BOM) dropped; other controls and line
    separators as ``_``."""
    out = []
    for ch in name:
        category = unicodedata.category(ch)
        if category == "Cs":
            out.append("\ufffd")
        elif category == "Cf":
            continue
        elif category in ("Cc", "Zl", "Zp"):
            out.append("_")
        else:
            out.append(ch)
    return "".join(out)


def _cut(name, limit=MAX_NAME_BYTES):
    """At most ``limit`` UTF-8 bytes, keeping a short extension when there is one."""
    if len(name.encode("utf-8")) <= limit:
        return name
    match = _SUFFIX.search(name)
    suffix = match.group(0) if match and len(match.group(0)) <= MAX_SUFFIX_CHARS else ""
    stem = name[:len(name) - len(suffix)]
    room = limit - len(suffix.encode("utf-8"))
    stem = stem.encode("utf-8")[:room].decode("utf-8", "ignore")
    return stem.rstrip(" .") + suffix


def sanitise_name(name, default=DEFAULT_NAME):
    """The name to show and to send back for a client's file name: its last path part,
    visible, NFKC-normalised, without reserved characters, ≤ 255 UTF-8 bytes."""
    if not isinstance(name, str):
        name = ""
    # Visible first: NFKC must not glue a hidden character's neighbours into a slash.
    name = unicodedata.normalize("NFKC", _visible(name))
    name = _visible(name)
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _RESERVED.sub("_", name)
    name = _SPACES.sub(" ", name).strip(" .")
    name = _cut(name)
    return name or default


def member_parts(name):
    """The parts of a member's path inside an archive, as shown and looked up: ``/`` or
    ``\\`` separated, without empty, ``.`` and ``..`` parts (so never absolute and never
    above the archive), each part visible (see ``_visible``). Never used on disk."""
    parts = (_visible(part).strip() for part in
             (name if isinstance(name, str) else "").replace("\\", "/").split("/"))
    return [part for part in parts if part not in ("", ".", "..")]


def stored_text(value):
    """A name from inside an archive as the database can keep it: bytes that were not
    UTF-8 (tarfile's surrogate escapes) and NULs written as ``\\xNN``."""
    return "".join(f"\\x{ord(ch) & 0xFF:02x}" if 0xDC80 <= ord(ch) <= 0xDCFF or ch == "\x00"
                   else "\ufffd" if unicodedata.category(ch) == "Cs" else ch for ch in value)


def clean_label(value, limit=255):
    """A short piece of client text kept as metadata (a tus ``filetype``): visible
    characters only, trimmed."""
    value = _visible(value if isinstance(value, str) else "")
    return _SPACES.sub(" ", value).strip()[:limit]
