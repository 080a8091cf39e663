"""The one guard for every file the repository writes: a write that fails for a reason the user can fix (a full
disk, a read-only folder, a path below a regular file, no permission) becomes one paragraph naming the path and
saying what is safe, instead of a traceback; and the start-up check of an output folder, so such a failure stops
a script before any epoch or record is written.

    with guarded_write(path):                   # or: guarded_write(path, safe=..., then=...)
        atomic_write(path, write)
    check_output_folder(out_folder, "--out")    # at start-up
"""
import contextlib
import errno
import os

from helper.core.errors import UserError

# What torch.save says when the disk fills under it: its C++ writer's failure, not an OSError.
TORCH_WRITE_FAILURES = ("inline_container.cc", "PytorchStreamWriter failed", "file write failed")
NOTHING_LOST = ("Nothing was lost: files are written to a temporary name and then renamed, so every file "
                "still holds its previous complete version.")
RUN_AGAIN = "Free space on that disk or make the folder writable, then run the same command again."
TEMP_PREFIX = ".tmp_"       # atomic_write's temporaries and the folder probe; a kill -9 mid-write can leave one


class WriteFailed(UserError):
    """A write that failed for a reason outside the program; `path` and `reason` say which and why."""

    def __init__(self, path, reason, safe=NOTHING_LOST, then=RUN_AGAIN):
        self.path, self.reason = path, reason
        super().__init__(f"could not write {path} ({reason}). {safe} {then}")


def write_failure_reason(err):
    """Why a write failed, in a few words, when `err` is a failure of the file system (None for a bug)."""
    if isinstance(err, WriteFailed):
        return err.reason
    if isinstance(err, RuntimeError) and any(text in str(err) for text in TORCH_WRITE_FAILURES):
        return "No space left on device, or the file could not be written"
    if isinstance(err, OSError) and err.errno in (errno.ENOTDIR, errno.EEXIST):
        in_the_way = regular_file_on(err.filename) if err.filename else None
        if in_the_way:
            return f"{in_the_way} is a regular file, not a folder"
    if isinstance(err, OSError):
        return err.strerror or str(err)
    return None


def regular_file_on(path):
    """The regular file that `path` names or lies below (None when there is none)."""
    path = os.path.abspath(os.fsdecode(path))
    while True:
        if os.path.isfile(path):
            return path
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent


@contextlib.contextmanager
def guarded_write(path, safe=NOTHING_LOST, then=RUN_AGAIN):
    """Run the block that writes `path`; a file-system failure in it raises `WriteFailed` naming `path`.

    `safe`: what the user keeps (default: every file its previous complete version); `then`: what to do.
    An inner guard's failure is told again in this guard's words, which know more about the caller.
    """
    try:
        yield
    except Exception as err:
        reason = write_failure_reason(err)
        if reason is None:
            raise
        raise WriteFailed(err.path if isinstance(err, WriteFailed) else path, reason, safe, then) from None


def folder_problem(folder, write_probe=None):
    """None when `folder` (created if needed) takes a small file, else why not, in a few words.

    `write_probe(path)` writes the probe file (default: 256 bytes with open()); it is removed again.
    """
    probe = os.path.join(folder, f"{TEMP_PREFIX}write_check.pth")
    try:
        os.makedirs(folder, exist_ok=True)
        if write_probe:
            write_probe(probe)
        else:
            with open(probe, "wb") as f:
                f.write(bytes(256))
        os.remove(probe)
        return None
    except Exception as err:
        reason = write_failure_reason(err)
        if reason is None:
            raise
        with contextlib.suppress(OSError):
            os.remove(probe)
        return reason


def check_output_folder(folder, flag):
    """Stop the script at start-up, before anything is computed or written, when the output folder `folder` of
    `flag` cannot take files (read-only, on a full disk, a regular file or below one)."""
    problem = folder_problem(folder)
    if problem:
        raise UserError(f"{flag} {folder} cannot take this script's output ({problem}). The script stopped "
                        "before computing or writing anything, so nothing was changed or lost. Choose another "
                        f"{flag}, or make the folder writable or free space on its disk, then run the same "
                        "command again.")
