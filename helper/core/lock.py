"""One writer at a time: an advisory `fcntl.flock` on a lock file that names its holder.

A sweep holds `<results>.lock` while it writes a results file, a training run `train.lock` in its run
folder. The lock is advisory and local: on a network file system without flock, run one writer per file.
"""
import contextlib
import fcntl
import os
import socket
import sys

from helper.core.writes import WriteFailed, guarded_write

RUN_AGAIN = "Make the folder writable or free space on its disk, then run the same command again."


@contextlib.contextmanager
def exclusive_lock(path, busy, wait=False, waiting=None, unwritable=None):
    """Hold `flock(LOCK_EX)` on `path`, recording this process in it.

    Another holder: raise `busy(holder)` (an exception; `holder` says which process), or with `wait`, print
    `waiting(holder)` and wait for it. A lock file that cannot be written (read-only folder, full disk) raises
    `unwritable(reason)`, by default a `WriteFailed` naming it. The file is removed on release, while still
    locked; a waiter then sees that the name now holds a new file and locks that one.
    """
    try:
        with guarded_write(path, safe="Nothing was computed or changed yet.", then=RUN_AGAIN):
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            fd = _lock_file(path, busy, wait, waiting)
            try:
                os.ftruncate(fd, 0)
                os.write(fd, f"process {os.getpid()} on {socket.gethostname()}: {' '.join(sys.argv)}".encode())
            except BaseException:
                _release(path, fd)
                raise
    except WriteFailed as err:
        if unwritable is None:
            raise
        raise unwritable(err.reason) from None
    try:
        yield
    finally:
        _release(path, fd)


def _release(path, fd):
    with contextlib.suppress(OSError):
        os.remove(path)
    os.close(fd)


def _lock_file(path, busy, wait, waiting):
    """A file descriptor holding `flock(LOCK_EX)` on `path` (the file the path names once locked)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 500, 0).decode(errors="replace").strip() or "another process"
            if not wait:
                os.close(fd)
                raise busy(holder) from None
            if waiting:
                print(waiting(holder), flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            return fd
        os.close(fd)                            # the holder removed it on release: lock the new file
