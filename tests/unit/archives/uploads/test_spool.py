"""SpoolReader frees what it has read from a real file, and returns the same bytes."""

import os

from collector.archives.uploads import SpoolReader


def test_reads_everything_and_punches_holes(tmp_path, monkeypatch):
    monkeypatch.setattr(SpoolReader, "FREE_EVERY", 1024 * 1024)
    data = os.urandom(8 * 1024 * 1024 + 123)
    path = tmp_path / "spool"
    path.write_bytes(data)
    with open(path, "r+b") as stream:  # waitress's spool is writable too
        reader = SpoolReader(stream)
        got = b"".join(iter(lambda: reader.read(300_000), b""))
        assert got == data
        assert reader.freed >= 7 * 1024 * 1024
        # where holes are supported, the file now occupies less than its size
        assert os.stat(path).st_blocks * 512 <= len(data)


def test_streams_without_a_file_are_read_as_they_are():
    import io

    reader = SpoolReader(io.BytesIO(b"abc"))
    assert reader.fd is None and reader.read(10) == b"abc"


def test_the_step_is_small_only_when_the_disk_is_tight(tmp_path):
    """The free-space check (uploads.spool_credit) counts on at most FREE_EVERY copied
    but not yet freed; the larger step, which costs fewer fallocate calls, is taken only
    when the disk has room for it beside the spool."""
    with open(tmp_path / "spool", "w+b") as stream:
        assert SpoolReader(stream).step == SpoolReader.FREE_EVERY == 8 * 1024 * 1024
        assert SpoolReader(stream, room=64 * 1024 * 1024).step == SpoolReader.FREE_EVERY
        assert SpoolReader(stream, room=1024 ** 3).step == SpoolReader.FREE_EVERY_ROOMY
