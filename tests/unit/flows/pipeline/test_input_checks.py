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


def typed_notes(type_drift: str = "warn") -> InputNotes:
    from vae_core.schema import ColumnSpec, FeatureSchema

    schema = FeatureSchema(
        (ColumnSpec("x", "numeric", "float64"), ColumnSpec("flag", "categorical", "bool")),
        ("id",),
        ("ts",),
    )
    return InputNotes.for_model(schema, "in.parquet", ("id",), type_drift)


def test_null_keys_are_counted_as_null_not_as_repeats() -> None:
    seen = notes()
    seen.observe(pd.DataFrame({"id": [1.0, None, None, 2.0], "x": 0.0}))
    seen.observe(pd.DataFrame({"id": [None, 1.0], "x": 0.0}))
    assert seen.null_keys == 3 and seen.duplicate_keys == 1
    text = " ".join(seen.messages())
    assert "3 row(s) have a null key" in text and "1 row(s) repeat the key value" in text
    seen.null_keys_scored = False  # quarantined: their reason says it
    assert "null key" not in " ".join(seen.messages())


def test_thousands_of_extra_columns_are_counted_and_the_first_named() -> None:
    seen = notes()
    wide = pd.DataFrame({"id": [1], "x": [0.0], **{f"c{i}": [0] for i in range(10_000)}})
    seen.observe(wide)
    seen.observe(wide.assign(id=2))
    (line,) = seen.messages()
    assert "10,000 columns are not used" in line and "['c0', 'c1'" in line
    assert "c10'" not in line and len(line) < 400


def test_type_drift_is_one_note_per_column_with_both_types() -> None:
    seen = typed_notes()
    batch = pd.DataFrame({"id": [1, 2], "x": pd.to_datetime(["2024-01-01"] * 2), "flag": [0, 1]})
    seen.observe(batch)
    seen.observe(batch.assign(id=[3, 4]))
    lines = seen.messages()
    assert len(lines) == 2
    assert "column 'x' holds timestamps (datetime64" in lines[0]
    assert "held numbers (float64) in training" in lines[0]
    assert "column 'flag' holds numbers (int64) but held booleans (bool)" in lines[1]


def test_type_drift_can_refuse() -> None:
    import pytest

    from vae_core.errors import ColumnTypeError

    seen = typed_notes("refuse")
    seen.observe(pd.DataFrame({"id": [1], "x": [1.5], "flag": [True]}))  # as trained
    refused = r"column 'flag' holds numbers .*\(score\.type_drift=refuse\)"
    with pytest.raises(ColumnTypeError, match=refused):
        seen.observe(pd.DataFrame({"id": [1], "x": [1.5], "flag": [1]}))


def test_text_in_a_timestamp_column_is_counted_across_parts() -> None:
    first, second = typed_notes(), typed_notes()
    first.observe(pd.DataFrame({"id": [1, 2], "x": 0.0, "flag": True, "ts": ["2024-01-01", "?"]}))
    second.observe(pd.DataFrame({"id": [3], "x": 0.0, "flag": True, "ts": ["later"]}))
    first.merge(second)
    (line,) = first.messages()
    assert "timestamp column 'ts' holds 2 value(s) that are not timestamps (first: '?')" in line


def test_training_notes_count_null_keys_apart_from_repeats() -> None:
    frame = pd.DataFrame({"id": [1.0, None, None, 1.0], "x": 0.0})
    lines = input_checks.training_notes(frame, frame.head(0), ["id"], "t.parquet")
    assert "1 row(s) repeat the key value" in lines[0]
    assert "2 row(s) have a null key" in lines[1]


def test_numbers_in_a_carried_timestamp_column_are_noted() -> None:
    seen = typed_notes()
    seen.observe(pd.DataFrame({"id": [1, 2], "x": 0.0, "flag": True, "ts": [1_700_000_000, 2]}))
    (line,) = seen.messages()
    assert "timestamp column 'ts' holds numbers (int64) but held timestamps" in line
    fine = typed_notes()
    fine.observe(pd.DataFrame({"id": [1], "x": 0.0, "flag": True, "ts": pd.to_datetime([0])}))
    assert fine.messages() == []


def test_merged_parts_keep_what_each_saw() -> None:
    """The flow's total starts empty and merges each partition's notes."""
    part = typed_notes()
    part.null_keys_scored = False  # the flow quarantines null keys
    batch = pd.DataFrame({"id": [None, 2.0], "x": 0.0, "flag": [0, 1], "ts": ["?", "2024"]})
    part.observe(batch)
    total = InputNotes(part.source, part.expected, part.key_columns)
    total.merge(part)
    assert total.null_keys == 1 and total.drifted == part.drifted
    text = " ".join(total.messages())
    assert "null key" not in text and "column 'flag' holds numbers" in text
    assert "timestamp column 'ts' holds 1 value(s)" in text
