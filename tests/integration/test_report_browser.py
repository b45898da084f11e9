"""The report of real scoring runs, opened in headless Chromium, and the runs that used to
break it: a sentinel timestamp, a constant timestamp, key values that look like chart math,
and 400,000 rows that each hold a distinct bad value.

Real Prefect, real MLflow (sqlite), real Parquet, the command line in-process; Chromium is
the Debian package (installed here when missing and possible, else these tests skip and
say why).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_runs import main_in_process, write_config

from flows.config import load_settings
from flows.demo_data import make_demo_frames
from flows.pipeline.writers import write_parquet_atomic
from flows.reporting.report import SECTION_IDS
from flows.train_flow import train_flow

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]

MODEL = "report-browser"
#: Set to a folder to write the docs' screenshots of the report there.
SCREENSHOT_VARIABLE = "VAE_ANOMALY_REPORT_SCREENSHOTS"
#: Sections of the docs' second screenshot: what the report says about the anomalies.
_FIRST_PART = ("summary", "accounting", "alerts", "threshold", "distribution", "top-anomalies")
CHROMIUM_TIMEOUT_S = 90


# -- Chromium ---------------------------------------------------------------------------------
def _find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium binary; installed with apt-get when missing and running as root."""
    found = _find_chromium()
    if found is None and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
            subprocess.run(command, env=env, capture_output=True, timeout=900, check=False)
        found = _find_chromium()
    if found is None:
        pytest.skip("Chromium is not installed and cannot be installed here (needs root and apt)")
    return found


def open_page(binary: str, page: Path, tmp_path: Path, fragment: str = "") -> tuple[str, str]:
    """``(dom after scripts ran, console lines)`` of ``page`` opened with ``#fragment``."""
    profile = tmp_path / "chromium-profile"
    result = subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
         "--v=0", f"--user-data-dir={profile}", "--dump-dom",
         page.resolve().as_uri() + (f"#{fragment}" if fragment else "")],
        capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    return result.stdout, "\n".join(console)


def screenshot(binary: str, page: Path, target: Path, tmp_path: Path, height: int = 2600) -> Path:
    subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--user-data-dir={tmp_path / 'chromium-shot'}", f"--window-size=1200,{height}",
         f"--screenshot={target}", page.resolve().as_uri()],
        capture_output=True, timeout=CHROMIUM_TIMEOUT_S, check=True,
    )  # fmt: skip
    return target


class _Dom(HTMLParser):
    """Section ids, the top table's rows (cell sort keys and texts) and hidden rows."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.heads: list[str] = []
        self.rows: list[dict] = []
        self.failed_charts = 0
        self.sorted_by: dict[str, str] = {}
        self._table: str | None = None
        self._cell: dict | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.sections.append(a.get("id", ""))
        if a.get("data-chart") == "failed":
            self.failed_charts += 1
        if tag == "table":
            self._table = a.get("id")
        if self._table != "top-table":
            return
        if tag == "th":
            self.heads.append(a.get("data-key", ""))
            if "aria-sort" in a:
                self.sorted_by[a["data-key"]] = a["aria-sort"]
        elif tag == "tr" and self.heads:
            self.rows.append({"hidden": "hidden" in a, "cells": []})
        elif tag == "td" and self.rows:
            self._cell = {"sort": a.get("data-sort"), "text": ""}
            self.rows[-1]["cells"].append(self._cell)

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        if tag == "td":
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data

    def column(self, key: str, shown_only: bool = True) -> list[dict]:
        index = self.heads.index(key)
        return [r["cells"][index] for r in self.rows if not (shown_only and r["hidden"])]


def dom(text: str) -> _Dom:
    parser = _Dom()
    parser.feed(text)
    return parser


# -- runs -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory, mlflow_store_factory) -> dict:
    """A champion trained on the demo payments, and the frame to score."""
    root = tmp_path_factory.mktemp("report-browser")
    store = mlflow_store_factory(root)
    train, score, _ = make_demo_frames(seed=5, n_train=900, n_score=400)
    train_path = write_parquet_atomic(train, root / "train.parquet")
    tree = {
        "tracking": {"tracking_uri": store, "registered_model": MODEL, "experiment": MODEL},
        "train": {
            "data_path": str(train_path),
            "key_columns": ["payment_id"],
            "timestamp_column": "created_at",
            "detector": {"max_epochs": 8, "random_state": 0},
        },
        "score": {"model_uri": f"models:/{MODEL}@champion", "top_n": 25},
    }
    train_flow(load_settings(files=[], environ={}, overrides=tree))
    return {"root": root, "tree": tree, "score": score}


def run_score(champion: dict, frame: pd.DataFrame, name: str, out: Path | None = None):
    """Score ``frame`` with ``vae-anomaly score --config``; ``(exit code, run folder)``."""
    root: Path = champion["root"] / name
    root.mkdir(exist_ok=True)
    data = write_parquet_atomic(frame, root / "input.parquet")
    out = out or root / "out"
    tree = json.loads(json.dumps(champion["tree"]))
    tree["score"].update({"input_path": str(data), "output_dir": str(out)})
    settings = load_settings(files=[], environ={}, overrides=tree)
    config = write_config(root / "config.yaml", settings)
    code = main_in_process(["score", "--config", config])
    latest = out / "latest.json"
    run_dir = out / json.loads(latest.read_text())["path"] if latest.exists() else None
    return code, run_dir


def assert_full_report(run_dir: Path, over_time: bool = True) -> str:
    """Every section there (``over-time`` only when rows were scored), no chart failed."""
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    found = dom(page)
    expected = [s for s in SECTION_IDS if over_time or s != "over-time"]
    assert found.sections == expected, found.sections
    assert found.failed_charts == 0
    return page


@pytest.fixture(scope="module")
def normal_run(champion: dict) -> Path:
    """Two runs into one output root: the second one's report has a history."""
    out = champion["root"] / "normal" / "out"
    code, _ = run_score(champion, champion["score"], "normal", out)
    assert code == 0
    code, run_dir = run_score(champion, champion["score"], "normal", out)
    assert code == 0
    return run_dir


def test_the_report_loads_in_chromium_without_console_errors(chromium, normal_run, tmp_path):
    page = normal_run / "report.html"
    text, console = open_page(chromium, page, tmp_path)
    assert console == "", console
    found = dom(text)
    assert found.sections == list(SECTION_IDS)
    assert found.failed_charts == 0
    scores = [float(c["sort"]) for c in found.column("score")]
    assert len(scores) == 25 and scores == sorted(scores, reverse=True)
    html = page.read_text(encoding="utf-8")
    assert "Drift from training" in html and "PSI" in html
    assert "This run among the last runs" in html and "(this run)" in html
    assert 'href="flagged.parquet"' in html and (normal_run / "flagged.parquet").exists()
    assert "KL" in html and "Training median" in html
    shot = screenshot(chromium, page, tmp_path / "report.png", tmp_path)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get(SCREENSHOT_VARIABLE):
        docs_screenshots(
            chromium, html, normal_run, Path(os.environ[SCREENSHOT_VARIABLE]), tmp_path
        )


def docs_screenshots(binary: str, html: str, run_dir: Path, folder: Path, tmp_path: Path) -> None:
    """The page's top (``report.png``) and its explanations, drift and history
    (``report-explained.png``), with the test's folders shown as a server's would be."""
    neutral = html.replace(str(run_dir.parents[3]), "/srv/payments")
    top = tmp_path / "docs-top.html"
    top.write_text(neutral, encoding="utf-8")
    screenshot(binary, top, folder / "report.png", tmp_path, 2300)
    first = "|".join(_FIRST_PART)
    rest = re.sub(rf'<section id="({first})">.*?</section>', "", neutral, flags=re.S)
    articles = re.findall(r'<article class="explain">.*?</article>', rest, flags=re.S)
    for article in articles[2:]:  # two explanations are enough to show what they hold
        rest = rest.replace(article, "")
    second = tmp_path / "docs-explained.html"
    second.write_text(rest, encoding="utf-8")
    screenshot(binary, second, folder / "report-explained.png", tmp_path, 2950)


@pytest.mark.parametrize(("fragment", "key", "ascending"), [
    ("sort=score:asc", "score", True),
    ("sort=rank:desc", "rank", False),
    ("sort=severity:asc", "severity", True),
])  # fmt: skip
def test_sorting_the_top_table(chromium, normal_run, tmp_path, fragment, key, ascending):
    text, console = open_page(chromium, normal_run / "report.html", tmp_path, fragment)
    assert console == "", console
    found = dom(text)
    values = [float(c["sort"]) for c in found.column(key)]
    assert values == sorted(values, reverse=not ascending)
    assert found.sorted_by == {key: "ascending" if ascending else "descending"}
    if key != "rank":  # the rows moved, not only the numbers
        ranks = [int(c["sort"]) for c in found.column("rank")]
        assert ranks != sorted(ranks)


def test_filtering_the_top_table(chromium, normal_run, tmp_path):
    plain = dom((normal_run / "report.html").read_text(encoding="utf-8"))
    wanted = plain.column("payment_id")[3]["text"]
    text, console = open_page(chromium, normal_run / "report.html", tmp_path, f"filter={wanted}")
    assert console == ""
    shown = [c["text"] for c in dom(text).column("payment_id")]
    assert shown == [wanted]


# -- runs that used to fail -----------------------------------------------------------------------
def test_a_sentinel_timestamp_does_not_break_the_run(champion):
    frame = champion["score"].copy()
    frame["created_at"] = frame["created_at"].astype("datetime64[us, UTC]")
    frame.loc[3, "created_at"] = pd.Timestamp("9999-12-31", tz="UTC")
    code, run_dir = run_score(champion, frame, "sentinel")
    assert code == 0
    page = assert_full_report(run_dir)
    assert "sentinel values" not in page  # said inside the chart, which is an image
    assert 'id="over-time"' in page


def test_a_constant_timestamp_does_not_break_the_run(champion):
    frame = champion["score"].assign(created_at=pd.Timestamp("2024-04-01 12:00", tz="UTC"))
    code, run_dir = run_score(champion, frame, "constant")
    assert code == 0
    assert_full_report(run_dir)


def test_labels_that_look_like_chart_math_do_not_break_the_run(champion):
    frame = champion["score"].copy()
    labels = ["$\\foo$", "100% $x$", "a\\b", "<b>bold</b>", "$$"]
    frame.loc[: len(labels) - 1, "payment_id"] = labels
    frame.loc[: len(labels) - 1, "amount"] = 1e6  # at the top of the table and the charts
    code, run_dir = run_score(champion, frame, "dollar")
    assert code == 0
    page = assert_full_report(run_dir)
    assert "&lt;b&gt;bold&lt;/b&gt;" in page and "<b>bold</b>" not in page
    assert "$\\foo$" in page


def test_400k_distinct_bad_values_give_a_small_report(champion):
    base = champion["score"]
    n = 400_000
    frame = base.iloc[np.arange(n) % len(base)].reset_index(drop=True)
    frame["payment_id"] = [f"Q{i:07d}" for i in range(n)]
    frame["fee"] = [f"{i // 100},{i % 100:02d}" for i in range(n)]  # comma decimals, all distinct
    code, run_dir = run_score(champion, frame, "bad400k")
    assert code == 0
    report = run_dir / "report.html"
    assert report.stat().st_size < 2_000_000
    page = assert_full_report(run_dir, over_time=False)  # no row scored: no time series
    assert "column &#39;fee&#39;: value is not a number" in page
    assert page.count("is not a number</code>") == 3  # three examples, not 400,000 reasons
