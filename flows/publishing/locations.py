"""Where a run may write: never inside the folder it reads.

Outputs written inside the input folder (or where the input's glob reaches) are read back
as input by every later run: scores scored again, a schema that no longer matches. The
check runs before anything is read or written.
"""

from __future__ import annotations

import os
from fnmatch import fnmatchcase
from pathlib import Path, PurePath

from vae_core.errors import InputError

_GLOB_CHARACTERS = frozenset("*?[")
#: Files a run publishes, relative to the output root; a glob that matches one reads them.
_PUBLISHED = ("runs/RUN/scores.parquet", "runs/RUN/flagged.parquet", "run_index.parquet")


class OutputInsideInputError(InputError):
    """The output folder is inside the input folder (or where the input glob reaches)."""


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in _GLOB_CHARACTERS)


def _glob_base(pattern: str) -> Path:
    """The folder a glob starts from: its parts before the first wildcard."""
    parts = PurePath(pattern).parts
    fixed = []
    for part in parts:
        if _is_glob(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _glob_reaches(pattern: Path, path: Path) -> bool:
    """Whether ``pattern`` (absolute) could match ``path`` (absolute), segment by segment."""
    if "**" in pattern.parts:
        return True  # a recursive glob reaches every depth
    wanted, parts = pattern.parts, path.parts
    return len(wanted) == len(parts) and all(map(fnmatchcase, parts, wanted))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_output_outside_input(input_path: str, output_dir: str | os.PathLike[str]) -> None:
    """Refuse ``output_dir`` inside the input folder, or where the input glob reaches.

    A single input file has no folder: anything beside it is fine.
    """
    if "://" in input_path or "://" in os.fspath(output_dir):
        return  # object stores: no folders to compare here
    output = Path(output_dir).resolve()
    if _is_glob(input_path):
        base = _glob_base(input_path).resolve()
        pattern = base / Path(input_path).relative_to(_glob_base(input_path))
        reached = _inside(output, base) and any(
            _glob_reaches(pattern, output / name) for name in _PUBLISHED
        )
    else:
        base = Path(input_path).resolve()
        reached = base.is_dir() and _inside(output, base)
    if reached:
        raise OutputInsideInputError(
            f"the output folder {output_dir} is inside the input {input_path}: every later "
            "run would read this run's outputs as input. Write the outputs outside it."
        )
