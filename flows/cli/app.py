"""``vae-anomaly``: the command line of the project.

Every subcommand is one ``Command`` in ``COMMANDS``, registered by a command module
(``library_commands``: version, fit, score-file; ``flow_commands``: train, score, demo,
serve, config-schema). This module imports the command modules, builds the parser from the
registry and turns what a command returns or raises into an exit code; a new command is one
more ``@command(...)`` function, and ``main`` needs no change.

Exit codes: 0 success, 2 bad input or configuration (unreadable data, a model directory that
is not a model, an output that exists, a bad option), 1 anything else. Errors are printed as
one line ``error: ...`` on stderr; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import sys
import traceback
import warnings
from collections.abc import Sequence
from typing import Any, NoReturn

# The command modules register their commands on import, in the order --help lists them.
from flows.cli import library_commands  # noqa: F401  (version, fit, score-file)

# isort: split
from flows.cli import flow_commands  # noqa: F401  (train, score, demo, serve, config-schema)
from flows.cli.registry import (
    COMMANDS,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    UsageError,
    positive_int,
    restore_torch_threads,
    set_torch_threads,
)

__all__ = ["COMMANDS", "build_parser", "is_user_error", "main"]

#: Names, in ``vae_core.errors``, of the errors the user can fix by changing the command line
#: or the files: exit code 2. (flows.mlops.tracking.ModelResolutionError is an InputError: a
#: model URI that resolves to nothing is a configuration to fix.)
USER_ERROR_NAMES = ("InputError", "ModelFileError", "OutputPathError")


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is one the user can fix (exit code 2) rather than a failure (1)."""
    if isinstance(exc, UsageError | FileExistsError):
        return True
    # The library's errors are looked up, not imported: importing vae_core loads torch, and
    # an exception of that family can only exist if vae_core.errors was imported already.
    errors = sys.modules.get("vae_core.errors")
    if errors is None:
        return False
    return isinstance(exc, tuple(getattr(errors, name) for name in USER_ERROR_NAMES))


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


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
    if is_user_error(exc):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code instead of exiting (testable)."""
    args = None
    try:
        args = build_parser().parse_args(argv)
        if args.threads is not None:
            set_torch_threads(args.threads)
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
        return EXIT_USAGE if is_user_error(exc) else EXIT_FAILURE
    finally:
        restore_torch_threads()  # main() may run inside a longer-lived process
