"""``vae-anomaly``: the command line of the project.

Every subcommand is one ``Command`` in ``COMMANDS``: a function that adds its options to an
argparse parser and a function that runs it and returns an exit code. A new command (the
Prefect ``train``/``score``/``serve`` flows, say) is one more ``@command(...)`` function;
``main`` needs no change.

Exit codes: 0 success, 2 bad input or configuration (unreadable data, a model directory that
is not a model, an output that exists, a bad option), 1 anything else. Errors are printed as
one line ``error: ...`` on stderr; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import torch

import vae_core
from flows.pipeline.input_checks import training_notes
from flows.pipeline.row_validation import split_training_rows
from flows.pipeline.sampling import sample_rows
from flows.pipeline.score_file import (
    DEFAULT_TOP,
    fit_and_save,
    fit_summary,
    print_score_summary,
    refuse_existing,
    score_file,
)
from vae_core import VAEAnomalyDetector
from vae_core.errors import InputError, ModelFileError, OutputPathError
from vae_core.io import DEFAULT_BATCH_SIZE, read_table
from vae_core.threshold import THRESHOLD_METHODS

PROG = "vae-anomaly"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
#: Errors the user can fix by changing the command line or the files: exit code 2.
#: (flows.mlops.tracking.ModelResolutionError is an InputError: a model URI that resolves to
#: nothing is a configuration to fix.)
USER_ERRORS: tuple[type[BaseException], ...] = (
    InputError,
    ModelFileError,
    OutputPathError,
    FileExistsError,
)


# -- command registry ------------------------------------------------------------------
Configure = Callable[[argparse.ArgumentParser], None]
Runner = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Command:
    """A subcommand: its name, one-line help, option setup and the function that runs it."""

    name: str
    summary: str
    configure: Configure
    run: Runner


#: Subcommands in the order ``--help`` lists them.
COMMANDS: dict[str, Command] = {}


def command(name: str, summary: str, configure: Configure) -> Callable[[Runner], Runner]:
    """Register the decorated function as subcommand ``name``."""

    def register(run: Runner) -> Runner:
        COMMANDS[name] = Command(name, summary, configure, run)
        return run

    return register


class UsageError(Exception):
    """A command line argparse rejected; reported like any other error, with exit code 2."""


_EXIT_USAGE_ERRORS = (*USER_ERRORS, UsageError)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


# -- argument types --------------------------------------------------------------------
def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def fraction_below_half(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 0.5:
        raise argparse.ArgumentTypeError(f"{text} must lie strictly between 0 and 0.5")
    return value


def device_name(text: str) -> str:
    """A torch device this machine has: fail at parse time, not after reading the data."""
    if text == "auto":
        return text
    try:
        device = torch.device(text)
    except RuntimeError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device") from exc
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise argparse.ArgumentTypeError(
                f"{text!r}: this machine has {count} CUDA device(s); use 'auto' or 'cpu'"
            )
    return text


def _add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        type=device_name,
        default="auto",
        help="torch device: 'auto' (CUDA when present, else CPU), 'cpu', 'cuda', 'cuda:1'. "
        "Default: %(default)s.",
    )


# -- version ---------------------------------------------------------------------------
def _configure_version(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


@command("version", "print the package version and whether CUDA is available", _configure_version)
def run_version(args: argparse.Namespace) -> int:
    print(f"{PROG} {vae_core.__version__}")
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}")
    if torch.cuda.is_available():
        names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
        print(f"CUDA available: yes ({torch.cuda.device_count()} device(s): {', '.join(names)})")
    else:
        print("CUDA available: no (training and scoring run on the CPU)")
    return EXIT_OK


# -- fit -------------------------------------------------------------------------------
#: The library's defaults, shown in --help; an option left unset keeps them.
_DETECTOR_DEFAULTS = VAEAnomalyDetector().get_params()


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
    parser.add_argument(
        "--threshold-method",
        choices=THRESHOLD_METHODS,
        help="how the label-free decision threshold is set: 'contamination' flags that share "
        "of rows, 'fpr' targets a false-alarm rate, 'pot' fits the score tail. "
        f"Default: {_DETECTOR_DEFAULTS['threshold_method']}.",
    )
    parser.add_argument(
        "--contamination",
        type=fraction_below_half,
        help="expected share of anomalies, for --threshold-method contamination. "
        f"Default: {_DETECTOR_DEFAULTS['contamination']}.",
    )
    parser.add_argument(
        "--target-fpr",
        type=fraction_below_half,
        help="share of normal rows allowed to be flagged, for --threshold-method fpr. "
        f"Default: {_DETECTOR_DEFAULTS['target_fpr']}.",
    )
    parser.add_argument(
        "--pot-risk",
        type=fraction_below_half,
        help="probability that a normal row scores above the threshold, for "
        f"--threshold-method pot. Default: {_DETECTOR_DEFAULTS['pot_risk']}.",
    )
    parser.add_argument(
        "--seed",
        type=int,
        help="random seed; the same seed gives the same model on CPU "
        "(default: random, printed in the summary).",
    )
    _add_device(parser)
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


#: fit option -> VAEAnomalyDetector parameter; options left unset keep the detector defaults.
_FIT_PARAMS = {
    "epochs": "max_epochs",
    "threshold_method": "threshold_method",
    "contamination": "contamination",
    "target_fpr": "target_fpr",
    "pot_risk": "pot_risk",
    "seed": "random_state",
}


def detector_from_args(args: argparse.Namespace) -> VAEAnomalyDetector:
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


# -- score -----------------------------------------------------------------------------
def _configure_score(parser: argparse.ArgumentParser) -> None:
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
    _add_device(parser)


@command(
    "score-file",
    "score Parquet with a model directory saved by 'fit' (no MLflow)",
    _configure_score,
)
def run_score_file(args: argparse.Namespace) -> int:
    detector = VAEAnomalyDetector.load(args.model_dir, device=args.device)
    summary = score_file(detector, args.data, args.output, args.top, args.batch_size)
    print_score_summary(summary, detector, args.output)
    return EXIT_OK


# Flow commands (train, score, demo, serve, config-schema) register themselves on import.
from flows.cli import flow_commands  # noqa: E402,F401


# -- main ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print the full traceback on errors.",
    )
    common.add_argument(
        "--threads",
        type=positive_int,
        default=argparse.SUPPRESS,
        help="CPU threads torch may use (default: torch's choice; 'demo' uses 1).",
    )
    parser = _Parser(
        prog=PROG,
        description="Anomaly detection on tabular Parquet data with a variational autoencoder.",
        epilog=f"Run '{PROG} COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--debug", action="store_true", help="print the full traceback on errors.")
    parser.add_argument(
        "--threads",
        type=positive_int,
        help="CPU threads torch may use (default: torch's choice; 'demo' uses 1). Small "
        "networks often train faster on one thread than on several busy cores.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in COMMANDS.values():
        sub = subparsers.add_parser(
            cmd.name, help=cmd.summary, description=cmd.summary, parents=[common]
        )
        cmd.configure(sub)
    return parser


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, _EXIT_USAGE_ERRORS):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code instead of exiting (testable)."""
    args = None
    threads = torch.get_num_threads()
    try:
        args = build_parser().parse_args(argv)
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return COMMANDS[args.command].run(args)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place every error becomes an exit code
        if args is not None and getattr(args, "debug", False):
            traceback.print_exc()
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, _EXIT_USAGE_ERRORS) else EXIT_FAILURE
    finally:
        torch.set_num_threads(threads)  # main() may run inside a longer-lived process
