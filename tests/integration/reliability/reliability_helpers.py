"""Helpers of the reliability tests: settings for both flows, running the CLI in-process,
checking that an error is one line, finding temporary files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cli_runs import MLFLOW_URI_VARIABLES, run_cli, write_config

from flows.config import Settings, load_settings

__all__ = [
    "MLFLOW_URI_VARIABLES",
    "Champion",
    "assert_one_line_error",
    "flow_settings",
    "run_cli",
    "temporary_files",
    "write_config",
]

MODEL_NAME = "rel"
#: Tiny and quick: these tests check plumbing and contracts, not detection quality.
TINY_DETECTOR = {"max_epochs": 3, "hidden_sizes": [16, 8], "latent_dim": 2, "random_state": 0}


@dataclass(frozen=True)
class Champion:
    """An MLflow store with a registered, promoted model and the data it was trained on."""

    store: str  # tracking URI
    folder: Path
    train: Path
    score: Path


def flow_settings(
    store: str,
    train_path: Path | str,
    score_path: Path | str,
    output_dir: Path,
    name: str = MODEL_NAME,
    **sections: dict,
) -> Settings:
    """Settings of both flows, built like a config file would be (validated, no env)."""
    tree: dict = {
        "tracking": {"tracking_uri": store, "registered_model": name, "experiment": "rel"},
        "train": {
            "data_path": str(train_path),
            "key_columns": ["payment_id"],
            "timestamp_column": "created_at",
            "detector": dict(TINY_DETECTOR),
        },
        "score": {
            "input_path": str(score_path),
            "output_dir": str(output_dir),
            "model_uri": f"models:/{name}@champion",
            "batch_size": 50,
        },
    }
    for section, values in sections.items():
        tree[section] = {**tree.get(section, {}), **values}
    return load_settings(files=[], environ={}, overrides=tree)


def assert_one_line_error(err: str, fragments: list[str] | tuple[str, ...]) -> str:
    """Exactly one ``error:`` line, last, containing every fragment; no traceback."""
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, err
    assert lines[-1] == errors[0] or "Stopping temporary server" in lines[-1], err
    assert "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


def temporary_files(folder: Path) -> list[str]:
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp"))
