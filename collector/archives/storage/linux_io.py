"""Two Linux calls the upload path uses when they exist (no-ops elsewhere).

- ``start_writeback``: sync_file_range(SYNC_FILE_RANGE_WRITE) starts writing a range of a
  file to disk without waiting, so the final fsync finds little left to do and the disk
  works while the CPU hashes.
- ``punch_hole``: fallocate(PUNCH_HOLE|KEEP_SIZE) frees the part of waitress's body spool
  already copied: it is never written back, and a 4 GiB upload does not need 8 GiB free.
"""

import ctypes
import ctypes.util
import os
import stat
import threading

SYNC_FILE_RANGE_WRITE = 2
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02


def _libc_function(name, *argtypes):
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        function = getattr(libc, name)
    except (OSError, AttributeError):
        return None
    function.argtypes = argtypes
    function.restype = ctypes.c_int
    return function


_sync_file_range = _libc_function("sync_file_range", ctypes.c_int, ctypes.c_int64,
                                  ctypes.c_int64, ctypes.c_uint)
_fallocate = _libc_function("fallocate", ctypes.c_int, ctypes.c_int, ctypes.c_int64,
                            ctypes.c_int64)


def start_writeback(fd, offset, length):
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE)


PAGE = 4096


def punch_hole(fd, offset, length):
    """Best effort: a filesystem without hole punching simply keeps the bytes. Returns
    whether the range was freed."""
    if _fallocate is not None and length > 0:
        return _fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset,
                          length) == 0
    return False


_punches = {}  # st_dev → whether that filesystem frees punched ranges


def can_punch_holes(directory):
    """Whether files in ``directory`` can have ranges freed (tried once per filesystem,
    on a small file of its own there)."""
    device = os.stat(directory).st_dev
    if device not in _punches:
        probe = os.path.join(directory, f".punch-probe-{os.getpid()}-{threading.get_ident()}")
        try:
            fd = os.open(probe, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError:
            return False
        try:
            os.unlink(probe)
            os.write(fd, b"\0" * (2 * PAGE))
            _punches[device] = punch_hole(fd, 0, PAGE)
        except OSError:
            return False
        finally:
            os.close(fd)
    return _punches[device]


def fd_of(stream):
    """The descriptor of a real file behind ``stream``, or None (BytesIO, sockets)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    return fd if stat.S_ISREG(os.fstat(fd).st_mode) else None
