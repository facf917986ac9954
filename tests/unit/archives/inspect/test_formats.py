"""formats.py and index.py: detection by bytes, members of each format, damage and bombs."""

import io

import pytest
import sample_archives as samples

from collector.archives.inspect import formats, index, reader

LIMITS = index.Limits(10**10, 200, 10_000)


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("compression", ["", "gz", "bz2", "xz", "zst"])
def test_tar_of_every_compression(tmp_path, compression):
    path = write(tmp_path, "archive", samples.tar(compression=compression))
    # The name says nothing: detection reads the bytes.
    assert formats.sniff(path) == ("tar", compression)
    result = index.build(path, "archive", LIMITS, str(tmp_path / "seek.gzidx"))
    assert result.error == ""
    by_path = {m.path: m for m in result.members}
    assert set(by_path) == {*samples.MEMBERS, "var/log/current"}
    syslog = by_path["var/log/syslog"]
    fmt = formats.format_name("tar", compression)
    with reader.open_stored(path, fmt, syslog, str(tmp_path / "seek.gzidx")) as stream:
        assert stream.read() == samples.SYSLOG
    nested = by_path["var/log/syslog.2.gz"]
    budget = formats.Budget(10**9)
    with reader.open_text(path, fmt, nested, str(tmp_path / "seek.gzidx"), budget) as stream:
        assert reader.count_lines(stream) == 301


@pytest.mark.parametrize("compression", ["bz2", "xz", "zst"])
def test_truncated_tar_in_every_compression(tmp_path, compression):
    data = samples.compress(samples.tar(
        {f"{i}.log": samples.SYSLOG * 20 for i in range(3)}, links=False), compression)
    path = write(tmp_path, "cut", data[:len(data) // 2])
    try:
        result = index.build(path, "cut", LIMITS)
    except formats.InspectError as exc:  # nothing readable before the damage
        assert "truncated" in str(exc) or "damaged" in str(exc)
    else:
        assert result.error and len(result.members) < 3


def test_zip_names_are_normalised_and_unique(tmp_path):
    path = write(tmp_path, "z.zip", samples.zip_archive(
        {"../a.log": b"1\n", "a.log": b"2\n", "./b//c.log": b"3\n", "..": b"4\n"}))
    result = index.build(path, "z.zip", LIMITS)
    assert [m.path for m in result.members] == ["a.log", "a.log (2)", "b/c.log", "unnamed"]


def test_damaged_zip_and_garbage(tmp_path):
    with pytest.raises(formats.InspectError, match="zip"):
        index.build(write(tmp_path, "z", b"PK\x03\x04" + b"\x00" * 100), "z", LIMITS)
    with pytest.raises(formats.InspectError, match="damaged|truncated"):
        index.build(write(tmp_path, "g", b"\x1f\x8b\x08\x00garbage"), "g", LIMITS)


def test_plain_binary_and_empty(tmp_path):
    [member] = index.build(write(tmp_path, "core", samples.BINARY), "core", LIMITS).members
    assert member.kind == "binary"
    [member] = index.build(write(tmp_path, "e.log", b""), "e.log", LIMITS).members
    assert member.kind == "empty"
    assert formats.looks_binary(b"text with \x1b[1mcolour\x1b[0m\n") is False


def test_bomb_and_limits(tmp_path):
    with pytest.raises(formats.InspectError, match="bomb"):
        index.build(write(tmp_path, "z.gz", samples.bomb()), "z.gz", LIMITS)
    small = index.Limits(1024 * 1024, 10**6, 10_000)
    result = index.build(write(tmp_path, "t.tar", samples.tar(
        {f"{i}.log": b"x" * 300_000 for i in range(8)})), "t.tar", small)
    assert "limit" in result.error and 0 < len(result.members) < 8


def test_read_lines_pages():
    data = b"one\ntwo\n" + b"z" * 10_000 + b"\nfour"
    lines, more = reader.read_lines(io.BytesIO(data), 2, 2, keep=5)
    assert lines == [(2, b"two", 3), (3, b"zzzzz", 10_000)] and more is True
    lines, more = reader.read_lines(io.BytesIO(data), 4, 10)
    assert lines == [(4, b"four", 4)] and more is False
    assert reader.count_lines(io.BytesIO(data)) == 4
    assert reader.count_lines(io.BytesIO(b"")) == 0
