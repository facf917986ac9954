"""Search inside members: a substring or a regular expression, grep-like, bounded.

The text is searched a chunk (1 MiB) at a time as bytes — never line by line in Python:
``bytes.find`` for a plain substring, the ``regex`` module otherwise, whose matching takes
a ``timeout``, so a pattern that backtracks forever stops at the search's deadline instead
of holding a worker. Line numbers are counted only where a match is (``bytes.count``).
One hit per matching line, with up to ``context`` lines before and after.

A ``Scan`` carries the caps of one search request across members and archives: results,
uncompressed bytes read, and the deadline; the first one reached stops the search and is
reported as ``reason``. A regular expression is bounded before it is compiled
(``patterns``), and each matching call sees at most ``REGEX_WINDOW`` bytes of text.
"""

import collections
import dataclasses
import queue
import threading
import time

import regex

from collector.archives.inspect import formats, patterns
from collector.archives.inspect.patterns import BadPattern
from collector.archives.inspect.reader import LINE_KEEP, decode

# A line longer than this is searched in pieces (a match across two pieces can be missed).
MAX_CARRY = 8 * 1024 * 1024
# Bytes of a long line shown before the match.
LEAD = 200
MAX_CONTEXT = 10
# Text one regular-expression call sees at most (whole lines where it can): the module's
# backtracking stack grows with the text a match may span — about 100 bytes a byte for a
# group inside a repeat, up to its own MemoryError at ~600 MB — so a 8 MiB line must not be
# handed over whole.
REGEX_WINDOW = 1024 * 1024


@dataclasses.dataclass
class Matcher:
    needle: bytes = b""
    pattern: object = None

    def find(self, data, pos, timeout):
        """``(start, end)`` of the first match at or after ``pos``, or None."""
        if self.pattern is None:
            start = data.find(self.needle, pos)
            return None if start < 0 else (start, start + len(self.needle))
        deadline = time.monotonic() + timeout
        while pos < len(data):
            end = len(data)
            if end - pos > REGEX_WINDOW:
                cut = data.rfind(b"\n", pos, pos + REGEX_WINDOW)
                end = cut + 1 if cut >= pos else pos + REGEX_WINDOW
            try:
                found = self.pattern.search(data, pos, end,
                                            timeout=max(deadline - time.monotonic(), 0.001))
            except MemoryError:
                raise BadPattern("the regular expression needs too much memory to match "
                                 "this text: simplify it") from None
            if found is not None:
                return found.span()
            pos = end
        return None


def compile_matcher(text, is_regex=False, ignore_case=False):
    if not text:
        raise BadPattern("the search text (q) is empty")
    raw = text.encode("utf-8")
    if not is_regex and not ignore_case:
        return Matcher(needle=raw)
    flags = regex.IGNORECASE if ignore_case else 0
    return Matcher(pattern=patterns.compile_pattern(raw if is_regex else regex.escape(raw),
                                                    flags))


class Scan:
    """The caps of one search request, shared by every member it reads."""

    def __init__(self, limit, max_bytes, seconds):
        self.limit = limit
        self.max_bytes = max_bytes
        self.seconds = seconds
        self.started = time.monotonic()
        self.deadline = self.started + seconds
        self.results = 0
        self.bytes = 0
        self.reason = None

    def remaining(self):
        return self.deadline - time.monotonic()

    def stop(self, reason):
        if self.reason is None:
            self.reason = reason

    def check(self):
        if self.results >= self.limit:
            self.stop("limit")
        elif self.bytes >= self.max_bytes:
            self.stop("bytes")
        elif self.remaining() <= 0:
            self.stop("time")
        return self.reason is None

    def summary(self):
        return {"results": self.results, "bytes_scanned": self.bytes,
                "truncated": self.reason is not None, "reason": self.reason,
                "elapsed": round(time.monotonic() - self.started, 3),
                "limits": {"results": self.limit, "bytes": self.max_bytes,
                           "seconds": self.seconds}}


def _line(number, data, start=0):
    """A context or hit line for the answer: at most LINE_KEEP bytes of it, decoded."""
    end = min(len(data), start + LINE_KEEP)
    return {"line": number, "text": decode(data[start:end]),
            "cut": start > 0 or end < len(data)}


def _hit(number, line, match_start, match_end):
    # A long line is shown from a little before the match.
    start = match_start - LEAD if match_start > LINE_KEEP - LEAD else 0
    result = _line(number, line, start)
    shown = len(result["text"])
    first = len(decode(line[start:match_start]))
    last = min(first + len(decode(line[match_start:match_end])), shown)
    result["match"] = [min(first, shown), last]
    result["before"], result["after"] = [], []
    return result


def search_stream(stream, matcher, scan, context=0):
    """Hits in one member's text stream, within ``scan``'s caps."""
    hits = []
    before = collections.deque(maxlen=context)  # (number, bytes) of the last lines seen
    waiting = []  # hits still collecting their `after` lines
    carry, line_base = b"", 1
    while scan.check():
        chunk = stream.read(formats.CHUNK)
        scan.bytes += len(chunk)
        if chunk:
            data = carry + chunk
            cut = data.rfind(b"\n")
            if cut < 0 and len(data) < MAX_CARRY:
                carry = data
                continue
            if cut < 0:
                # One enormous line: search what we have, keep counting it as one line.
                work, carry = data, b""
                ends_line = False
            else:
                work, carry = data[:cut + 1], data[cut + 1:]
                ends_line = True
        else:
            work, carry, ends_line = carry, b"", True
            if not work:
                break
        line_base = _search_block(work, line_base, ends_line, matcher, scan, context,
                                  hits, before, waiting)
        if not chunk:
            break
    for hit in hits:
        hit.pop("_need", None)
    return hits


def _search_block(work, line_base, ends_line, matcher, scan, context, hits, before, waiting):
    """Search ``work`` (whole lines, the last one maybe unfinished); the next line number."""
    lines_in_work = work.count(b"\n") + (0 if work.endswith(b"\n") else 1)
    # Lines after earlier hits come from the start of this block.
    if waiting:
        _fill_after(work, line_base, waiting)
    pos, counted_to, number = 0, 0, line_base
    while pos < len(work) and scan.results < scan.limit:
        try:
            found = matcher.find(work, pos, scan.remaining())
        except TimeoutError:
            scan.stop("time")
            break
        if found is None:
            break
        line_start = work.rfind(b"\n", 0, found[0]) + 1
        line_end = work.find(b"\n", found[0])
        line_end = len(work) if line_end < 0 else line_end
        number += work.count(b"\n", counted_to, line_start)
        counted_to = line_start
        line = work[line_start:line_end]
        hit = _hit(number, line, found[0] - line_start, min(found[1], line_end) - line_start)
        if context:
            hit["before"] = _before(work, line_start, number, context, before)
            hit["_need"] = context
            waiting.append(hit)
            _fill_after(work[line_end + 1:], number + 1, [hit])
        hits.append(hit)
        scan.results += 1
        pos = line_end + 1
    if context:
        _remember(work, line_base + lines_in_work - 1, context, before)
    for hit in hits:
        if hit.get("_need") == 0:
            del hit["_need"]
    waiting[:] = [hit for hit in waiting if hit.get("_need")]
    return line_base + (lines_in_work if ends_line else lines_in_work - 1)


def _before(work, line_start, number, context, before):
    lines = []
    end = line_start - 1  # the newline ending the previous line
    while len(lines) < context and end >= 0:
        start = work.rfind(b"\n", 0, end) + 1
        lines.append(_line(number - 1 - len(lines), work[start:end]))
        end = start - 1
    # Fewer lines in this block: the rest from the previous block's last lines.
    for line_number, data in reversed(before):
        if len(lines) >= context:
            break
        if line_number < number - len(lines):
            lines.append(_line(line_number, data))
    return [line for line in reversed(lines) if line["line"] >= 1]


def _fill_after(data, first_number, hits):
    pos, number = 0, first_number
    needed = max(hit["_need"] for hit in hits)
    taken = []
    while len(taken) < needed and pos < len(data):
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end
        taken.append(_line(number, data[pos:end]))
        number, pos = number + 1, end + 1
    for hit in hits:
        wanted = [line for line in taken if line["line"] > hit["line"]][:hit["_need"]]
        hit["after"].extend(wanted)
        hit["_need"] -= len(wanted)


def _remember(work, last_number, context, before):
    end = len(work) - (1 if work.endswith(b"\n") else 0)
    lines, number = [], last_number
    # ``end >= 0``: an empty first line of the block (the block starts with its newline)
    # is a line too.
    while len(lines) < context and end >= 0 and number >= 1:
        start = work.rfind(b"\n", 0, end) + 1
        lines.append((number, work[start:end][:LINE_KEEP]))
        number, end = number - 1, start - 1
    for line in reversed(lines):
        before.append(line)


class Prefetched(formats.io.RawIOBase):
    """Reads ``stream`` ahead on a helper thread (zlib, bz2 and lzma release the GIL), so
    decompressing and searching run on two cores."""

    def __init__(self, stream, depth=4):
        self._queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._leftover = b""
        self._done = False
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True,
                                        name="inspect-prefetch")
        self._thread.start()

    def _pump(self, stream):
        try:
            while not self._stop.is_set():
                data = stream.read(formats.CHUNK)
                self._put(data)
                if not data:
                    return
        except BaseException as exc:  # handed to the reading thread
            self._put(exc)

    def _put(self, item):
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def readable(self):
        return True

    def readinto(self, buffer):
        if not self._leftover and not self._done:
            item = self._queue.get()
            if isinstance(item, BaseException):
                self._done = True
                raise item
            if not item:
                self._done = True
            self._leftover = item
        count = min(len(buffer), len(self._leftover))
        buffer[:count] = self._leftover[:count]
        self._leftover = self._leftover[count:]
        return count

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        super().close()


def sequential(archive_path, index_format, members, budget):
    """``(member, text stream)`` for each of ``members`` of a tar, in one forward pass.

    One decompressing stream over the whole archive (read ahead on a helper thread),
    instead of a seek per member: searching every member of a .tar.gz costs one
    decompression of it, as ``zcat | grep`` does.
    """
    raw = formats.open_source(archive_path)
    compression = index_format.removeprefix("tar").lstrip(".")
    base = formats.decompressor(raw, compression) if compression else raw
    stream = Prefetched(base) if compression else base
    position = 0
    try:
        for member in sorted(members, key=lambda m: m.offset):
            if compression:
                formats.skip(stream, member.offset - position)
            else:
                raw.seek(member.offset)
            region = formats.Limited(stream, member.size)
            content = formats.io.BufferedReader(region, formats.CHUNK)
            if member.compression:
                inner = formats.decompressor(content, member.compression)
                yield member, formats.io.BufferedReader(formats.Counted(inner, budget),
                                                        formats.CHUNK)
            else:
                yield member, content
            region.drain()
            position = member.offset + member.size
    finally:
        if stream is not base:
            stream.close()
        if base is not raw:
            base.close()
        raw.close()
