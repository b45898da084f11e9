"""File-to-file jobs without an orchestrator: fit on Parquet, score Parquet into Parquet.

The CLI's ``fit``/``score`` commands and the demo call these; the Prefect flows can wrap the
same functions in tasks. Printing is kept to the ``*_summary`` helpers so the jobs
themselves stay quiet and testable.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from flows.pipeline.input_checks import InputNotes
from flows.pipeline.memory import release_free_memory
from flows.pipeline.partitions import TRIM_EVERY, PartitionResult, abandon, scored_table
from flows.pipeline.prefetch import WriteBehind, prefetch
from flows.pipeline.writers import ParquetBatchWriter
from vae_core import VAEAnomalyDetector
from vae_core.errors import InputError, SchemaError
from vae_core.features import EncodedData
from vae_core.io import DEFAULT_BATCH_SIZE, iter_batches
from vae_core.output_targets import check_file_target
from vae_core.scoring import UNFILTERED_COLUMNS, ScoreArrays

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


def carried_columns(detector: VAEAnomalyDetector, batch: pd.DataFrame, source: str) -> list[str]:
    """Key columns (required, so rows can be traced) and datetime columns (when present)."""
    keys = list(detector.schema_.key_columns)
    absent = [k for k in keys if k not in batch.columns]
    if absent:
        raise SchemaError(
            f"{source}: key column(s) {absent} the model was fitted with are missing; "
            "scores could not be traced back to their rows."
        )
    return keys + [c for c in detector.schema_.ignored_columns if c in batch.columns]


def _encoded_batches(
    detector: VAEAnomalyDetector, data: str, batch_size: int, notes: InputNotes
) -> Iterator[tuple[pd.DataFrame, EncodedData]]:
    """The reading stage, run in the read-ahead thread: carried columns and encoded rows."""
    for batch in iter_batches(data, batch_size=batch_size):
        notes.observe(batch)
        carried = batch[carried_columns(detector, batch, data)].reset_index(drop=True)
        yield carried, detector.encode(batch, source=data)


def score_file(
    detector: VAEAnomalyDetector,
    data: str,
    output: Path,
    top: int = DEFAULT_TOP,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> ScoreSummary:
    """Stream ``data`` through the detector into ``output``; keep the ``top`` rows in memory.

    The scoring flow's pipeline without its quarantine: batches are read and encoded in a
    background thread, scored in this one, and turned into output rows and written in
    another. A bad value stops the run, and nothing is written.
    """
    if Path(data).resolve() == output.resolve():
        raise InputError(f"output {output} is the input file; write the scores elsewhere.")
    check_file_target(output)  # before any work: a device or a folder is refused up front
    notes = InputNotes.for_model(detector.schema_, data)
    threshold = detector.threshold_.value
    summary = PartitionResult()
    writer = ParquetBatchWriter(output, without_statistics=UNFILTERED_COLUMNS)
    batches = prefetch(_encoded_batches(detector, data, batch_size, notes))

    def write_scores(item: tuple[pd.DataFrame, ScoreArrays]) -> None:
        writer.write_arrow(scored_table(*item, threshold))

    behind = WriteBehind(write_scores)
    batches_done = 0
    try:
        for carried, encoded in batches:
            arrays = detector.score_arrays(encoded)
            behind.submit((carried, arrays))
            # The top rows keep their position in the output, for the summary.
            start = summary.rows_scored
            numbered = carried.assign(row=np.arange(start, start + len(arrays)))
            summary.keep_top_of(numbered, arrays, threshold, top)
            summary.rows_scored += len(arrays)
            summary.n_flagged += int(np.count_nonzero(arrays.score > threshold))
            batches_done += 1
            if batches_done % TRIM_EVERY == 0:  # three threads: see flows.pipeline.memory
                release_free_memory()
        behind.flush()
        writer.close()
    except BaseException:
        abandon(batches, behind, writer)
        raise
    top_rows = pd.DataFrame() if summary.top is None else summary.top
    return ScoreSummary(
        summary.rows_scored,
        summary.n_flagged,
        top_rows.reset_index(drop=True),
        notes.messages(),
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
