"""The registered model, loaded in a fresh process with ``mlflow.pyfunc``, gives the scoring
flow's exact rows on the flow's input, also when column types drift the way daily files do:
an integer column that arrives as float because of one null, a float column that arrives as
int64."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from reliability_helpers import MLFLOW_URI_VARIABLES, flow_settings

from flows.pipeline.writers import write_parquet_atomic

pytestmark = pytest.mark.usefixtures("prefect_server")

NAME = "rel_int"
INTEGER_COLUMNS = ("items", "account_age_days")

FRESH_PROCESS = textwrap.dedent("""
    import sys
    import mlflow, pandas as pd
    model = mlflow.pyfunc.load_model(sys.argv[1])
    model.predict(pd.read_parquet(sys.argv[2])).to_parquet(sys.argv[3])
""")


def _with_integers(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype({name: "int64" for name in INTEGER_COLUMNS})


@pytest.fixture(scope="module")
def store(
    tmp_path_factory: pytest.TempPathFactory,
    frames: tuple[pd.DataFrame, pd.DataFrame],
    mlflow_store_factory: Callable[[Path], str],
) -> tuple[str, Path]:
    """A champion trained on data with integer columns; the folder for the inputs."""
    from flows.train_flow import train_flow

    folder = tmp_path_factory.mktemp("rel-int")
    train = write_parquet_atomic(_with_integers(frames[0]), folder / "train.parquet")
    uri = mlflow_store_factory(folder)
    outcome = train_flow(flow_settings(uri, train, train, folder / "unused", name=NAME))
    assert outcome.alias == "champion"
    return uri, folder


def _flow_scores(uri: str, data: Path, out: Path) -> pd.DataFrame:
    from flows.score_flow import score_flow

    # One batch, as predict scores its input: torch's float32 sums depend on the batch's
    # shape (a few 1e-8 relative), so exact equality needs the same batches.
    score_flow(flow_settings(uri, data, data, out, name=NAME, score={"batch_size": 10_000}))
    (scores,) = out.rglob("scores.parquet")
    return pd.read_parquet(scores)


def _pyfunc_scores(uri: str, data: Path, out: Path) -> pd.DataFrame:
    env = {k: v for k, v in os.environ.items() if k not in MLFLOW_URI_VARIABLES}
    env["MLFLOW_TRACKING_URI"] = uri
    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, f"models:/{NAME}@champion", str(data), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=out.parent,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return pd.read_parquet(out)


def _drifted(frame: pd.DataFrame) -> pd.DataFrame:
    """``items`` (integer in training) as float with a null, ``amount`` (float) as int64."""
    drifted = _with_integers(frame).astype({"items": "float64"})
    drifted.loc[5, "items"] = np.nan
    drifted["amount"] = drifted["amount"].round().astype("int64")
    return drifted


@pytest.mark.parametrize("variant", ["as_trained", "types_drifted"])
def test_the_registered_model_scores_exactly_like_the_flow(
    tmp_path: Path, store: tuple[str, Path], frames, variant: str
) -> None:
    uri, _ = store
    score = _with_integers(frames[1]) if variant == "as_trained" else _drifted(frames[1])
    data = write_parquet_atomic(score, tmp_path / "input.parquet")
    flow = _flow_scores(uri, data, tmp_path / "out")
    served = _pyfunc_scores(uri, data, tmp_path / "served.parquet")

    assert len(flow) == len(score) and list(served.columns) == list(flow.columns)
    assert list(flow.columns[:2]) == ["payment_id", "created_at"]  # key and timestamp lead
    for column in flow.columns:
        np.testing.assert_array_equal(
            served[column].to_numpy(), flow[column].to_numpy(), err_msg=column
        )
    assert pd.api.types.is_datetime64_any_dtype(served["created_at"])
    if variant == "types_drifted":
        assert np.isfinite(served["score"]).all() and served["score"].iloc[5] > 0
