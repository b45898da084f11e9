"""The ``vae-anomaly`` command line: ``main`` runs it, ``COMMANDS`` lists its subcommands."""

from flows.cli.app import COMMANDS, build_parser, main

__all__ = ["COMMANDS", "build_parser", "main"]
