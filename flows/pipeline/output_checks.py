"""The scoring output root must be a folder (or nothing yet); anything else is refused up front.

Creating ``runs/`` below a regular file fails with ``[Errno 17] File exists`` or
``[Errno 20] Not a directory``, which names neither the setting nor what to do.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from vae_core.errors import OutputPathError
from vae_core.output_targets import check_directory_target


def require_output_folder(path: str | os.PathLike[str], setting: str = "score.output_dir") -> Path:
    """Return ``path`` if the scoring outputs can be written below it: a folder, or nothing
    there yet (a device, a pipe or a file in the way of a parent is refused as well)."""
    target = check_directory_target(path)
    try:
        mode = os.stat(target).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return target
    if stat.S_ISREG(mode):
        raise OutputPathError(
            f"{target} is a file, but the output path ({setting}) must be a folder: the run "
            "writes its files below it. Choose another output folder, or move the file away."
        )
    return target
