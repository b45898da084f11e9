"""Input notes: extra columns and duplicate keys, in bounded memory."""

from __future__ import annotations

import pandas as pd

from flows.pipeline import input_checks
from flows.pipeline.input_checks import InputNotes


def notes() -> InputNotes:
    return InputNotes("in.parquet", frozenset({"id", "x"}), ("id",))


def test_duplicates_and_extra_columns_are_reported_across_batches() -> None:
    seen = notes()
    seen.observe(pd.DataFrame({"id": [1, 2, 3], "x": 0.0, "extra": 1}))
    seen.observe(pd.DataFrame({"id": [3, 4, 1], "x": 0.0}))
    assert seen.duplicate_keys == 2 and seen.extra_columns == ["extra"]
    text = " ".join(seen.messages())
    assert "['extra']" in text and "2 row(s) repeat the key value" in text


def test_the_duplicate_check_stops_at_its_memory_bound_and_says_so(monkeypatch) -> None:
    monkeypatch.setattr(input_checks, "MAX_KEY_HASHES", 4)
    first, second = notes(), notes()
    first.observe(pd.DataFrame({"id": [1, 2, 1], "x": 0.0}))
    second.observe(pd.DataFrame({"id": [2, 9, 9], "x": 0.0}))  # the 9s are beyond the bound
    first.merge(second)
    assert first.duplicate_keys == 2  # 1 repeated, then 2 repeated within the first 4 rows
    assert first.unchecked_key_rows == 2
    assert "checked over the first 4 rows only; 2 later rows" in " ".join(first.messages())


def test_a_key_seen_three_times_is_two_repeats_however_often_asked() -> None:
    seen = notes()
    seen.observe(pd.DataFrame({"id": [7, 5, 7], "x": 0.0}))
    seen.observe(pd.DataFrame({"id": [6, 7, 5, 8], "x": 0.0}))
    assert seen.duplicate_keys == 3  # 7 twice more, 5 once more
    assert seen.duplicate_keys == 3  # counting leaves the collected hashes as they were
    seen.observe(pd.DataFrame({"id": [8], "x": 0.0}))  # after a count, more rows count too
    assert seen.duplicate_keys == 4
    alone = notes()
    alone.observe(pd.DataFrame({"id": [1], "x": 0.0}))
    assert alone.duplicate_keys == 0 and notes().duplicate_keys == 0
