"""What every command module shares: the registry, exit codes, argument types.

A command is one ``@command(...)`` function in a command module; ``flows.cli.app`` imports
the command modules, which registers them, and builds the parser from ``COMMANDS``.

This module imports nothing beyond the standard library, so that listing the commands and
parsing a command line cost no more than argparse does. Anything heavy (torch, pandas, the
library, Prefect, MLflow) is imported inside the function that needs it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

PROG = "vae-anomaly"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

Configure = Callable[[argparse.ArgumentParser], None]
Runner = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Command:
    """A subcommand: its name, one-line help, option setup and the function that runs it."""

    name: str
    summary: str
    configure: Configure
    run: Runner


#: Subcommands in the order ``--help`` lists them (the order the command modules register).
COMMANDS: dict[str, Command] = {}


def command(name: str, summary: str, configure: Configure) -> Callable[[Runner], Runner]:
    """Register the decorated function as subcommand ``name``."""

    def register(run: Runner) -> Runner:
        COMMANDS[name] = Command(name, summary, configure, run)
        return run

    return register


class UsageError(Exception):
    """A command line argparse rejected; reported like any other error, with exit code 2."""


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


def fraction_from_zero_below_half(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 0.5:
        raise argparse.ArgumentTypeError(f"{text} must be at least 0 and below 0.5")
    return value


def open_fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"{text} must lie strictly between 0 and 1")
    return value


def device_name(text: str) -> str:
    """A torch device this machine has: fail at parse time, not after reading the data."""
    if text == "auto":  # the default: parsing it must not import torch
        return text
    import torch

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


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        type=device_name,
        default="auto",
        help="torch device: 'auto' (CUDA when present, else CPU), 'cpu', 'cuda', 'cuda:1'. "
        "Default: %(default)s.",
    )


# -- torch threads ---------------------------------------------------------------------
#: torch's thread count before ``main`` first changed it, so that ``main`` can put it back
#: (it may run inside a longer-lived process, a test session or a notebook).
_threads_before: list[int] = []


def set_torch_threads(count: int) -> None:
    """Let torch use ``count`` CPU threads until ``restore_torch_threads``."""
    import torch

    if not _threads_before:
        _threads_before.append(torch.get_num_threads())
    torch.set_num_threads(count)


def restore_torch_threads() -> None:
    """Undo ``set_torch_threads``; nothing to do (and no torch import) if it never ran."""
    if _threads_before:
        import torch

        torch.set_num_threads(_threads_before.pop())
