"""Which run folders stay: the newest ``keep_runs`` complete runs, and never ``latest``'s;
hidden folders of runs that died are removed.

A folder is removed by renaming it to a hidden name first, so a reader never finds a
half-deleted run under its visible name, and a removal cut short is finished by the next
run. Hidden folders (``.staging-<host>.<pid>.<run_id>`` being written,
``.removing-<host>.<pid>.<run_id>`` being deleted) are left alone while their process is
alive; on another host, only once nothing in them changed for ``STALE_TEMPORARY_S``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from flows.pipeline.writers import STALE_TEMPORARY_S, writer_is_gone, writer_tag

STAGING_PREFIX, REMOVING_PREFIX = ".staging-", ".removing-"
_MANIFEST = "manifest.json"


def _last_change(folder: Path) -> float:
    """The newest modification time in ``folder`` (a file being written keeps it fresh)."""
    newest = folder.stat().st_mtime
    for path in folder.rglob("*"):
        try:
            newest = max(newest, path.stat().st_mtime)
        except OSError:
            continue
    return newest


def _abandoned(folder: Path, prefix: str, stale_after_s: float) -> bool:
    host, _, rest = folder.name.removeprefix(prefix).partition(".")
    pid = rest.partition(".")[0]
    if pid.isdigit() and writer_is_gone(host, int(pid)):
        return True
    try:
        return time.time() - _last_change(folder) > stale_after_s
    except OSError:
        return False


def remove_abandoned(runs: Path, stale_after_s: float = STALE_TEMPORARY_S) -> list[Path]:
    """Delete the hidden staging and removal folders of dead runs under ``runs``."""
    removed = []
    for folder in sorted(runs.glob(".*")):
        prefixes = (STAGING_PREFIX, REMOVING_PREFIX)
        prefix = next((p for p in prefixes if folder.name.startswith(p)), None)
        if prefix and folder.is_dir() and _abandoned(folder, prefix, stale_after_s):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def remove_tree(folder: Path) -> None:
    """Delete ``folder``; a visible one is renamed to a hidden name first."""
    if not folder.exists():
        return
    if not folder.name.startswith("."):
        hidden = folder.with_name(f"{REMOVING_PREFIX}{writer_tag()}.{folder.name}")
        os.rename(folder, hidden)
        folder = hidden
    shutil.rmtree(folder, ignore_errors=True)


def _order(folder: Path) -> tuple[str, str, str] | None:
    """How new a complete run is: (run date, finished at, id); None if not a complete run."""
    try:
        manifest = json.loads((folder / _MANIFEST).read_text(encoding="utf-8"))
        return str(manifest["run_date"]), str(manifest["finished_at"]), folder.name
    except (OSError, ValueError, KeyError, TypeError):
        return None


def complete_runs(runs: Path) -> list[Path]:
    """The complete run folders under ``runs``, oldest first (by run date, then finish)."""
    ordered = []
    for folder in runs.iterdir() if runs.is_dir() else ():
        order = None if folder.name.startswith(".") or not folder.is_dir() else _order(folder)
        if order is not None:
            ordered.append((order, folder))
    return [folder for _, folder in sorted(ordered)]


def apply_retention(runs: Path, keep_runs: int, keep: set[str]) -> list[Path]:
    """Remove complete runs beyond the newest ``keep_runs``, except those named in ``keep``.

    Folders without a readable manifest are not runs this code wrote: they are left alone.
    """
    complete = complete_runs(runs)
    surplus = complete[: max(0, len(complete) - keep_runs)]
    removed = []
    for folder in surplus:
        if folder.name in keep:
            continue
        remove_tree(folder)
        removed.append(folder)
    return removed
