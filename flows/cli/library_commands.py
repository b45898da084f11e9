"""Commands on the library alone, no Prefect or MLflow: version, fit, score-file.

Registered into ``flows.cli.COMMANDS`` on import. The library and everything under it
(torch, pandas, pyarrow) are imported inside the commands, so that ``--help`` and
``version`` start in a fraction of a second.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.cli.defaults import DEFAULT_BATCH_SIZE, DEFAULT_TOP, DETECTOR_DEFAULTS, THRESHOLD_METHODS
from flows.cli.registry import (
    EXIT_OK,
    PROG,
    add_device,
    command,
    fraction_below_half,
    fraction_from_zero_below_half,
    non_negative_int,
    open_fraction,
    positive_int,
)

if TYPE_CHECKING:
    from vae_core import VAEAnomalyDetector

_CPU_ONLY = "training and scoring run on the CPU"


# -- version ---------------------------------------------------------------------------
# Importing torch takes seconds, and asking it about CUDA can take more (driver start-up).
# So versions come from the installed distributions' metadata, and by default CUDA is
# judged without torch: a torch build without CUDA support, or (on Linux) no NVIDIA driver
# loaded, settles "no" for certain, which is the answer on most machines. Anywhere else the
# answer needs torch, and '--cuda' asks it (and lists the devices).
def _configure_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cuda",
        action="store_true",
        help="ask torch whether CUDA works and list the devices (takes a few seconds); "
        "without it, CUDA is judged from the torch build and the NVIDIA driver.",
    )


def _distribution_version(distribution: str, module: str) -> str:
    import importlib.metadata  # here: it costs a few hundredths of a second to import

    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return str(importlib.import_module(module).__version__)


def _torch_build() -> dict[str, str | None] | None:
    """``cuda`` and ``hip`` of torch/version.py, read without importing torch; None: unknown."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return None
    try:
        tree = ast.parse(Path(spec.origin).with_name("version.py").read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None
    build: dict[str, str | None] = {}
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        value = getattr(node, "value", None)
        if isinstance(target, ast.Name) and isinstance(value, ast.Constant):
            build[target.id] = value.value
    return build if {"cuda", "hip"} <= build.keys() else None


def _nvidia_driver_loaded() -> bool | None:
    """Whether Linux's NVIDIA driver lists a GPU; None where that cannot be told."""
    if sys.platform != "linux":
        return None
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


def cuda_without_torch() -> str:
    """The 'CUDA available' line as far as it can be told without importing torch."""
    build = _torch_build()
    if build is None:
        reason = "the torch build could not be read"
    elif build["cuda"] is None and build["hip"] is None:
        return f"CUDA available: no (this torch build is CPU-only; {_CPU_ONLY})"
    elif build["hip"] is not None:
        reason = f"torch built for ROCm {build['hip']}"
    else:
        driver = _nvidia_driver_loaded()
        if driver is False:
            return f"CUDA available: no (no NVIDIA GPU driver loaded; {_CPU_ONLY})"
        reason = f"torch built for CUDA {build['cuda']}"
        if driver:
            reason += ", NVIDIA driver loaded"
    return f"CUDA available: not checked ({reason}; run '{PROG} version --cuda' to ask torch)"


def cuda_from_torch() -> str:
    """The 'CUDA available' line as torch answers it."""
    import torch

    if not torch.cuda.is_available():
        return f"CUDA available: no ({_CPU_ONLY})"
    count = torch.cuda.device_count()
    names = sorted({torch.cuda.get_device_name(i) for i in range(count)})
    return f"CUDA available: yes ({count} device(s): {', '.join(names)})"


@command("version", "print the package version and whether CUDA is available", _configure_version)
def run_version(args: argparse.Namespace) -> int:
    print(f"{PROG} {_distribution_version('vae-anomaly', 'vae_core')}")
    print(f"python {sys.version.split()[0]}, torch {_distribution_version('torch', 'torch')}")
    print(cuda_from_torch() if args.cuda else cuda_without_torch())
    return EXIT_OK


# -- fit -------------------------------------------------------------------------------
def _configure_fit(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="DATA", help="Parquet file, directory or glob to train on.")
    parser.add_argument(
        "--model-dir", required=True, type=Path, help="directory to save the fitted model to."
    )
    parser.add_argument(
        "--key-column",
        dest="key_columns",
        action="append",
        default=[],
        metavar="K",
        help="column carried through to the scores but never modelled (an id, an entity); "
        "repeat for several. Datetime columns are carried automatically.",
    )
    parser.add_argument(
        "--epochs",
        type=positive_int,
        help="upper bound on training epochs (default: sized "
        "from the data; early stopping usually ends sooner).",
    )
    _add_threshold_options(parser)
    parser.add_argument(
        "--seed",
        type=int,
        help="random seed; the same seed gives the same model on CPU "
        "(default: random, printed in the summary).",
    )
    add_device(parser)
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing model at --model-dir."
    )
    parser.add_argument("--progress", action="store_true", help="show a training progress bar.")
    parser.add_argument(
        "--max-train-rows",
        type=positive_int,
        help="train on a uniform random sample of at most this many rows, drawn in one "
        "streaming pass (for data larger than memory); reproducible with --seed.",
    )
    parser.add_argument(
        "--numeric-errors",
        choices=("quarantine", "fail"),
        default="quarantine",
        help="a text column whose values are numbers except for a few: 'quarantine' trains "
        "on the other rows as numbers and reports the rest, 'fail' stops naming the first "
        "bad value. Default: %(default)s.",
    )


def _add_threshold_options(parser: argparse.ArgumentParser) -> None:
    # Shown defaults are the library's; an option left unset keeps them (see _FIT_PARAMS).
    parser.add_argument(
        "--threshold-method",
        choices=THRESHOLD_METHODS,
        help="how the label-free decision threshold is set: 'iqr' flags rows far above the "
        "bulk of the reference scores, 'contamination' flags that share of rows, 'fpr' "
        "targets a false-alarm rate, 'pot' fits the score tail, 'conformal' bounds the "
        "false-discovery rate of the flags. "
        f"Default: {DETECTOR_DEFAULTS['threshold_method']}.",
    )
    parser.add_argument(
        "--min-alert-rate",
        type=fraction_from_zero_below_half,
        help="for --threshold-method iqr: lower the fence to the reference scores' "
        "(1 - rate) quantile where it lies above it, so that at least about that share of "
        "rows like the reference is flagged; 0 keeps the plain fence. "
        f"Default: {DETECTOR_DEFAULTS['iqr_min_alert_rate']}.",
    )
    parser.add_argument(
        "--contamination",
        type=fraction_below_half,
        help="expected share of anomalies, for --threshold-method contamination. "
        f"Default: {DETECTOR_DEFAULTS['contamination']}.",
    )
    parser.add_argument(
        "--target-fpr",
        type=fraction_below_half,
        help="share of normal rows allowed to be flagged, for --threshold-method fpr. "
        f"Default: {DETECTOR_DEFAULTS['target_fpr']}.",
    )
    parser.add_argument(
        "--pot-risk",
        type=fraction_below_half,
        help="probability that a normal row scores above the threshold, for "
        f"--threshold-method pot. Default: {DETECTOR_DEFAULTS['pot_risk']}.",
    )
    parser.add_argument(
        "--fdr",
        type=open_fraction,
        help="share of normal rows allowed among the flags, for --threshold-method "
        f"conformal. Default: {DETECTOR_DEFAULTS['fdr']}.",
    )


#: fit option -> VAEAnomalyDetector parameter; options left unset keep the detector defaults.
_FIT_PARAMS = {
    "epochs": "max_epochs",
    "threshold_method": "threshold_method",
    "min_alert_rate": "iqr_min_alert_rate",
    "contamination": "contamination",
    "target_fpr": "target_fpr",
    "pot_risk": "pot_risk",
    "fdr": "fdr",
    "seed": "random_state",
}


def detector_from_args(args: argparse.Namespace) -> VAEAnomalyDetector:
    from vae_core import VAEAnomalyDetector

    params: dict[str, Any] = {
        param: getattr(args, option)
        for option, param in _FIT_PARAMS.items()
        if getattr(args, option) is not None
    }
    return VAEAnomalyDetector(
        key_columns=tuple(args.key_columns), device=args.device, verbose=args.progress, **params
    )


@command("fit", "train a detector on Parquet data and save it", _configure_fit)
def run_fit(args: argparse.Namespace) -> int:
    from flows.pipeline.input_checks import training_notes
    from flows.pipeline.row_validation import split_training_rows
    from flows.pipeline.sampling import sample_rows
    from flows.pipeline.score_file import fit_and_save, fit_summary, refuse_existing
    from vae_core.io import read_table

    refuse_existing(args.model_dir, args.overwrite)
    if args.max_train_rows is None:
        frame = read_table(args.data)
    else:
        frame, info = sample_rows(args.data, args.max_train_rows, seed=args.seed or 0)
        if info.sampled:
            print(f"sampled {info.rows_sampled:,} of {info.rows_seen:,} rows (seed {info.seed})")
    frame, quarantined = split_training_rows(
        frame, tuple(args.key_columns), str(args.data), args.numeric_errors
    )
    for note in training_notes(frame, quarantined, args.key_columns, str(args.data)):
        print(f"warning: {note}", file=sys.stderr)
    detector = detector_from_args(args)
    seconds = fit_and_save(detector, frame, args.model_dir, args.overwrite)
    for line in fit_summary(detector, len(frame), seconds):
        print(line)
    print(f"model saved to {args.model_dir}")
    return EXIT_OK


# -- score-file ------------------------------------------------------------------------
def _configure_score_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="DATA", help="Parquet file, directory or glob to score.")
    parser.add_argument("--model-dir", required=True, type=Path, help="directory written by 'fit'.")
    parser.add_argument(
        "--output",
        required=True,
        type=Path,
        metavar="OUT.parquet",
        help="Parquet file to write: key and datetime columns, then the score columns, one "
        "row per input row in input order. Replaced atomically if it exists.",
    )
    parser.add_argument(
        "--top",
        type=non_negative_int,
        default=DEFAULT_TOP,
        metavar="N",
        help="print the N highest-scoring rows (0: none). Default: %(default)s.",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=DEFAULT_BATCH_SIZE,
        help="rows read and scored at a time; bounds memory. Default: %(default)s.",
    )
    add_device(parser)


@command(
    "score-file",
    "score Parquet with a model directory saved by 'fit' (no MLflow)",
    _configure_score_file,
)
def run_score_file(args: argparse.Namespace) -> int:
    from flows.pipeline.score_file import print_score_summary, score_file
    from vae_core import load_model

    # Any kind of model: a sensor model's input is scored as one stream, in order.
    detector = load_model(args.model_dir, device=args.device)
    summary = score_file(detector, args.data, args.output, args.top, args.batch_size)
    print_score_summary(summary, detector, args.output)
    return EXIT_OK
