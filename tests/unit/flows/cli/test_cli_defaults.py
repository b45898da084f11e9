"""The values ``--help`` shows are the library's: flows.cli.defaults against their sources.

The command line keeps its own copies so that ``--help`` imports nothing heavy; these tests
fail when a library default changes and the copy does not.
"""

from __future__ import annotations

import argparse

import pytest

from flows import cli
from flows.cli import defaults
from flows.pipeline import score_file
from vae_core import VAEAnomalyDetector, io, threshold


def subcommand(name: str) -> argparse.ArgumentParser:
    parser = cli.build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return commands.choices[name]


def test_threshold_methods_are_the_librarys() -> None:
    assert defaults.THRESHOLD_METHODS == threshold.THRESHOLD_METHODS


def test_detector_defaults_are_the_detectors() -> None:
    params = VAEAnomalyDetector().get_params()
    assert defaults.DETECTOR_DEFAULTS == {name: params[name] for name in defaults.DETECTOR_DEFAULTS}


def test_batch_size_and_top_rows_are_the_scoring_defaults() -> None:
    assert defaults.DEFAULT_BATCH_SIZE == io.DEFAULT_BATCH_SIZE
    assert defaults.DEFAULT_TOP == score_file.DEFAULT_TOP


@pytest.mark.parametrize(
    "option, expected",
    [
        ("--threshold-method", f"Default: {VAEAnomalyDetector().threshold_method}."),
        ("--contamination", f"Default: {VAEAnomalyDetector().contamination}."),
        ("--target-fpr", f"Default: {VAEAnomalyDetector().target_fpr}."),
        ("--pot-risk", f"Default: {VAEAnomalyDetector().pot_risk}."),
        ("--fdr", f"Default: {VAEAnomalyDetector().fdr}."),
    ],
)
def test_fit_help_shows_the_detector_defaults(option: str, expected: str) -> None:
    fit = subcommand("fit")
    (action,) = [a for a in fit._actions if option in a.option_strings]
    assert action.help is not None and action.help.endswith(expected)


def test_score_file_help_shows_the_scoring_defaults() -> None:
    parser = subcommand("score-file")
    shown = {a.dest: a.default for a in parser._actions}
    assert shown["batch_size"] == io.DEFAULT_BATCH_SIZE
    assert shown["top"] == score_file.DEFAULT_TOP
