"""File-to-file jobs without an orchestrator: fit on Parquet, score Parquet into Parquet.

The CLI's ``fit``/``score`` commands and the demo call these; the Prefect flows can wrap the
same functions in tasks. Printing is kept to the ``*_summary`` helpers so the jobs
themselves stay quiet and testable.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from flows.pipeline.stream import StreamOptions, StreamOutputs, run_stream
from vae_core import VAEAnomalyDetector
from vae_core.errors import InputError
from vae_core.io import DEFAULT_BATCH_SIZE, iter_batches
from vae_core.output_targets import check_file_target
from vae_core.streaming import Detector

#: How many of the highest-scoring rows are printed by default.
DEFAULT_TOP = 10


def refuse_existing(model_dir: Path, overwrite: bool) -> None:
    """Fail before training, not after it, when the model would not be saved."""
    if model_dir.exists() and not overwrite:
        raise FileExistsError(f"{model_dir} already exists; pass --overwrite to replace it.")


def fit_and_save(
    detector: VAEAnomalyDetector, frame: pd.DataFrame, model_dir: Path, overwrite: bool
) -> float:
    """Fit, save, and return the fit time in seconds."""
    started = time.perf_counter()
    detector.fit(frame)
    seconds = time.perf_counter() - started
    detector.save(model_dir, overwrite=overwrite)
    return seconds


def fit_summary(detector: VAEAnomalyDetector, n_rows: int, seconds: float) -> list[str]:
    """Lines an operator checks after training: data, epochs, threshold, alert rate."""
    kinds = [c.kind for c in detector.schema_.columns]
    carried = [*detector.schema_.key_columns, *detector.schema_.ignored_columns]
    epochs = ", ".join(
        f"{len(r.history)} (best {r.best_epoch + 1}"
        + (", stopped early)" if r.stopped_early else ")")
        for r in detector.training_results_
    )
    threshold = detector.threshold_
    params = ", ".join(
        f"{k}={v:g}" for k, v in threshold.params.items() if not k.startswith(("initial", "gpd_"))
    )
    return [
        f"rows: {n_rows:,}",
        f"features: {len(kinds)} ({kinds.count('numeric')} numeric, "
        f"{kinds.count('categorical')} categorical); carried: {', '.join(carried) or 'none'}",
        f"epochs: {epochs}; {seconds:.1f} s on {detector.device_}; seed {detector.random_state_}",
        f"threshold: {threshold.value:.4g} ({threshold.method}, {params}); expected alert "
        f"rate {threshold.expected_alert_rate:.2%}",
    ]


@dataclass
class ScoreSummary:
    """What a scoring run did, small enough to print or log."""

    rows: int
    flagged: int
    top: pd.DataFrame  # the highest-scoring rows: 'row', carried columns, score columns
    notes: list[str] = field(default_factory=list)  # ignored columns, duplicate keys


def score_file(
    detector: Detector,
    data: str,
    output: Path,
    top: int = DEFAULT_TOP,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> ScoreSummary:
    """Stream ``data`` through the detector into ``output``; keep the ``top`` rows in memory.

    The scoring flow's pipeline without its quarantine: a bad value stops the run, and
    nothing is written.
    """
    if Path(data).resolve() == output.resolve():
        raise InputError(f"output {output} is the input file; write the scores elsewhere.")
    check_file_target(output)  # before any work: a device or a folder is refused up front
    options = StreamOptions(numeric_errors=None, top_n=top, number_rows=True)
    # Batches of exactly batch_size rows, as before the pipeline was shared: scores are
    # bit-identical for a given batch size (BLAS sums depend on the batch's shape).
    batches = iter_batches(data, batch_size=batch_size)
    result = run_stream(detector, batches, data, StreamOutputs(output), options)
    top_rows = pd.DataFrame() if result.top is None else result.top
    notes = result.notes.messages() if result.notes is not None else []
    return ScoreSummary(
        result.rows_scored, result.n_flagged, top_rows.reset_index(drop=True), notes
    )


def _contributions(row: pd.Series) -> str:
    parts = []
    for rank in range(1, 100):
        name = row.get(f"top_feature_{rank}")
        if name is None:
            break
        parts.append(f"{name} {row[f'top_feature_{rank}_share']:.0%}")
    return ", ".join(parts)


def format_top(top: pd.DataFrame, carried: Sequence[str], extra: pd.Series | None = None) -> str:
    """A fixed-width table of the top rows and what drove their scores."""
    table = pd.DataFrame({"rank": np.arange(1, len(top) + 1), "row": top["row"]})
    for column in carried:
        table[column] = top[column].astype(str)
    table["score"] = top["score"].map(lambda v: f"{v:.4g}")
    table["flagged"] = top["is_anomaly"].map({True: "yes", False: "no"})
    if extra is not None:
        table[extra.name] = extra.reindex(top["row"]).fillna("").to_numpy()
    table["contributing features (share of recon_error)"] = top.apply(_contributions, axis=1)
    return table.to_string(index=False)


def print_score_summary(
    summary: ScoreSummary,
    detector: VAEAnomalyDetector,
    output: Path,
    extra: pd.Series | None = None,
) -> None:
    share = summary.flagged / summary.rows if summary.rows else 0.0
    print(f"rows scored: {summary.rows:,}")
    print(
        f"rows flagged: {summary.flagged:,} ({share:.2%}; threshold {detector.threshold_.value:.4g}"
        f", expected {detector.threshold_.expected_alert_rate:.2%})"
    )
    print(f"scores written to {output}")
    for note in summary.notes:
        print(f"warning: {note}", file=sys.stderr)
    if len(summary.top):
        carried = [c for c in detector.schema_.key_columns if c in summary.top.columns]
        print(f"\ntop {len(summary.top)} rows by score:")
        print(format_top(summary.top, carried, extra))
