"""collector.cli.IdleTrim: heap memory is handed back once per idle spell, never while
the process is busy (glibc's real ``malloc_trim``)."""

import ctypes
import time

import pytest

from collector.cli import IdleTrim


@pytest.fixture
def libc():
    try:
        library = ctypes.CDLL(None)
        library.malloc_trim  # noqa: B018 (glibc only)
    except (OSError, AttributeError):
        pytest.skip("glibc's malloc_trim is needed")
    return library


def test_trims_once_when_idle_never_while_busy(libc):
    calls = []

    def trim(pad):
        calls.append(time.monotonic())
        return libc.malloc_trim(pad)

    trimmer = IdleTrim(trim, period=0.2)
    trimmer.start()
    try:
        # Busy for a second: every period sees the process use a whole CPU.
        deadline = time.monotonic() + 1.0
        waste = 0
        while time.monotonic() < deadline:
            waste += sum(range(1000))
        busy_until = time.monotonic()
        assert calls == [] and waste
        # Idle: one trim after a quiet period, then none until the process works again.
        time.sleep(1.2)
        assert len(calls) == 1 and calls[0] > busy_until
        time.sleep(0.6)
        assert len(calls) == 1
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            waste += sum(range(1000))
        time.sleep(1.0)
        assert len(calls) == 2
    finally:
        trimmer.stopping.set()
        trimmer.join(2)
    assert not trimmer.is_alive()
