"""The scoring output root: a folder or nothing; a file there is refused naming the path."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.pipeline.output_checks import require_output_folder
from vae_core.errors import OutputPathError


def test_a_folder_or_nothing_is_fine(tmp_path: Path) -> None:
    assert require_output_folder(tmp_path) == tmp_path
    assert require_output_folder(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"


def test_a_regular_file_is_refused_saying_a_folder_is_needed(tmp_path: Path) -> None:
    blocker = tmp_path / "scores"
    blocker.write_text("not a folder")
    with pytest.raises(OutputPathError, match=r"scores is a file, .*score\.output_dir.* folder"):
        require_output_folder(blocker)
    with pytest.raises(OutputPathError, match=r"is a file, not a directory"):
        require_output_folder(blocker / "below")
    assert blocker.read_text() == "not a folder"


def test_a_device_is_refused() -> None:
    with pytest.raises(OutputPathError, match="character device"):
        require_output_folder("/dev/null")
