"""Where an output may be written: every writer in the project checks its target here.

An atomic writer builds a temporary file and renames it over the target. Renamed over a
device (``/dev/null``), a FIFO or a socket, that replaces the special file with a regular
one for every other program on the machine; renamed over a directory, it fails with an
error naming the temporary file. So a target that exists must be of the kind the writer
produces, and a failure to write names the path the user gave, not a temporary sibling.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vae_core.errors import OutputPathError

_KIND_NAMES = (
    (stat.S_ISREG, "a file"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind_of(mode: int) -> str:
    for test, name in _KIND_NAMES:
        if test(mode):
            return name
    return "a special file"


def _existing_mode(target: Path) -> int | None:
    """The mode of what ``target`` names (links followed), or None when nothing is there."""
    try:
        return os.stat(target).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None  # a file in the way of a parent is reported by _check_parent
    except OSError as exc:
        raise OutputPathError(f"{target}: cannot check the output path ({exc.strerror}).") from exc


def _check_parent(target: Path) -> None:
    for parent in target.parents:
        mode = _existing_mode(parent)
        if mode is None:
            continue
        if not stat.S_ISDIR(mode):
            raise OutputPathError(
                f"{target}: {parent} is {_kind_of(mode)}, not a directory, so nothing can be "
                "written below it; choose another output path."
            )
        return


def check_file_target(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` if a file may be written there; refuse anything but a regular file.

    A missing target is fine (its parent directories are created by the writer); an
    existing one must be a regular file (or a link to one), which the writer replaces.
    """
    target = Path(path)
    mode = _existing_mode(target)
    if mode is not None and not stat.S_ISREG(mode):
        raise OutputPathError(
            f"{target} is {_kind_of(mode)}; an output file can only replace a regular file. "
            "Choose another output path."
        )
    _check_parent(target)
    return target


def check_directory_target(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` if a directory may be written there: nothing, a folder or a file.

    Whether an existing folder or file may be replaced is the caller's decision (an
    ``overwrite`` flag); a device, pipe or socket never is.
    """
    target = Path(path)
    mode = _existing_mode(target)
    if mode is not None and not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        raise OutputPathError(
            f"{target} is {_kind_of(mode)}; an output folder can only replace a folder or a "
            "file. Choose another output path."
        )
    _check_parent(target)
    return target


@contextmanager
def writing_to(target: Path) -> Iterator[None]:
    """Report a permission or read-only failure inside the block against ``target``.

    The operating system's message names the temporary file, which the user never asked
    for and which is gone by the time they read it.
    """
    try:
        yield
    except (PermissionError, IsADirectoryError, NotADirectoryError) as exc:
        raise OutputPathError(f"{target}: cannot write here ({exc.strerror}).") from exc
    except OSError as exc:
        if exc.errno == errno.EROFS:
            raise OutputPathError(f"{target}: cannot write here ({exc.strerror}).") from exc
        raise


def fsync_directory(directory: Path) -> None:
    """Persist a rename; some platforms cannot open directories, where rename suffices."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
