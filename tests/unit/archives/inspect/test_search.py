"""search.py: hits, line numbers and context across chunk boundaries, caps, bad patterns."""

import io

import pytest

from collector.archives.inspect import formats, search


def run(data, text, context=0, limit=100, is_regex=False, ignore_case=False, **caps):
    scan = search.Scan(limit, caps.get("max_bytes", 10**12), caps.get("seconds", 30))
    matcher = search.compile_matcher(text, is_regex, ignore_case)
    return search.search_stream(io.BytesIO(data), matcher, scan, context), scan


def numbered(count):
    return b"".join(b"line %d\n" % n for n in range(1, count + 1))


def test_line_numbers_and_context_across_chunks(monkeypatch):
    # Tiny chunks: every hit and its context straddle block boundaries.
    monkeypatch.setattr(formats, "CHUNK", 16)
    hits, scan = run(numbered(50), "line 2", context=2)
    assert [hit["line"] for hit in hits] == [2] + list(range(20, 30))
    first = hits[0]
    assert [line["line"] for line in first["before"]] == [1]
    assert [line["line"] for line in first["after"]] == [3, 4]
    twenty = hits[1]
    assert [line["text"] for line in twenty["before"]] == ["line 18", "line 19"]
    assert [line["text"] for line in twenty["after"]] == ["line 21", "line 22"]
    assert scan.reason is None and scan.results == 11


@pytest.mark.parametrize("chunk", [1, 3, 7, 16])
def test_empty_lines_at_a_block_start_are_context_too(monkeypatch, chunk):
    # A block that begins with its newline ends with an empty line of its own; it used to
    # be left out of the next block's "before" lines.
    monkeypatch.setattr(formats, "CHUNK", chunk)
    hits, _ = run(b"\n\nhit here\n", "hit", context=3)
    assert [(line["line"], line["text"]) for line in hits[0]["before"]] == [(1, ""), (2, "")]
    hits, _ = run(b"\nxxxxxxxxxxxxxxxx hit\n", "hit", context=1)
    assert [(line["line"], line["text"]) for line in hits[0]["before"]] == [(1, "")]


def test_last_line_without_newline_and_one_hit_per_line():
    hits, _ = run(b"a\nxx xx\nend xx", "xx")
    assert [(hit["line"], hit["match"]) for hit in hits] == [(2, [0, 2]), (3, [4, 6])]


def test_long_line_is_shown_around_the_match():
    line = b"a" * 100_000 + b"FOUND" + b"b" * 100_000
    [hit], _ = run(b"before\n" + line + b"\nafter\n", "FOUND")
    assert hit["line"] == 2 and hit["cut"] is True
    start, end = hit["match"]
    assert hit["text"][start:end] == "FOUND"
    assert len(hit["text"]) == 4096


def test_non_utf8_and_case_insensitive_regex():
    [hit], _ = run(b"ok\nErr\xff: caf\xe9\n", r"err.\W", is_regex=True, ignore_case=True)
    assert hit["text"] == "Err\\xff: caf\\xe9"
    assert hit["match"] == [0, 8]


def test_caps():
    hits, scan = run(numbered(100), "line", limit=7)
    assert len(hits) == 7 and scan.reason == "limit"
    _, scan = run(numbered(100_000), "absent", max_bytes=1)
    assert scan.reason == "bytes"
    _, scan = run(b"a" * 3000 + b"\n", "(a+a+)+b", is_regex=True, seconds=0.2)
    assert scan.reason == "time"


def test_bad_patterns():
    with pytest.raises(search.BadPattern, match="empty"):
        search.compile_matcher("")
    with pytest.raises(search.BadPattern, match="not a valid regular expression"):
        search.compile_matcher("[a-", is_regex=True)
    # Not a regex: special characters are literal.
    [hit], _ = run(b"a.b\naxb\n", "a.b")
    assert hit["line"] == 1


def test_prefetched_reads_like_the_stream_and_passes_errors_on():
    data = numbered(10_000)
    stream = search.Prefetched(io.BytesIO(data))
    assert stream.read() == data
    stream.close()

    class Broken(io.RawIOBase):
        def readable(self):
            return True

        def readinto(self, buffer):
            raise EOFError("cut")

    broken = search.Prefetched(Broken())
    with pytest.raises(EOFError):
        broken.read(10)
    broken.close()
