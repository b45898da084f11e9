"""The figures that need the model: a real detector trained on a small frame, real Parquet
input read back for the top rows' values, the reconstruction, drift and the flagged file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from flows.pipeline.summary import (
    MAX_REASON_GROUPS,
    OTHER_REASONS,
    PartitionResult,
    reason_group,
)
from flows.reporting import report
from flows.reporting.enrich import NO_KEYS, NO_PROFILE
from flows.reporting.reconstruct import reconstruct, unscale
from vae_core import VAEAnomalyDetector
from vae_core.features import BERNOULLI_FLAGS_FROM


def payments(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "payment_id": [f"p{seed}-{i}" for i in range(n)],
            "amount": rng.lognormal(3.0, 0.5, n),
            "fee": rng.normal(5.0, 0.5, n),
            "kind": rng.choice(["card", "wire", "cash"], n, p=[0.7, 0.25, 0.05]),
        }
    )


@pytest.fixture(scope="module")
def detector() -> VAEAnomalyDetector:
    return VAEAnomalyDetector(key_columns=("payment_id",), random_state=0, max_epochs=15).fit(
        payments(800, 0)
    )


def test_unscale_inverts_the_scaling_and_the_compressed_tail() -> None:
    columns = [{"centre": 10.0, "scale": 2.0}, {"centre": 1.0, "scale": 0.5, "log1p": True}]
    z = np.array([[1.0, 0.0], [25.0, 2.0]])
    raw = unscale(z, columns, soft_clip=20.0)
    assert raw[0, 0] == pytest.approx(12.0)
    assert raw[1, 0] == pytest.approx(10.0 + 2.0 * (20.0 + np.expm1(5.0)))
    assert raw[0, 1] == pytest.approx(np.expm1(1.0))
    assert raw[1, 1] == pytest.approx(np.expm1(2.0))


def test_the_reconstruction_of_ordinary_rows_is_near_their_values(detector) -> None:
    rows = payments(50, 1)
    expected = reconstruct(detector, rows)
    assert list(expected.columns) == ["amount", "fee", "kind"]
    assert np.all(np.abs(expected["fee"] - 5.0) < 1.5)
    assert expected["kind"].isin(["card", "wire", "cash"]).all()
    assert reconstruct(object(), rows) is None


@pytest.mark.parametrize(
    ("share", "booleans"),
    [(0.15, False), (0.5, False), (0.5, True)],
    ids=["rare_bernoulli", "common_numeric", "common_booleans"],
)
def test_a_flag_is_reconstructed_as_one_of_its_two_values(share: float, booleans: bool) -> None:
    """A flag's reconstruction is one of its two values, the one the model favours: here
    flags that follow the amount, set in ``share`` of the rows. Rare ones have one
    Bernoulli logit each (enough of them), common ones on data of mostly flags are numbers;
    a boolean column reads back as booleans.
    """
    frame = payments(800, 0).drop(columns="payment_id")
    rng = np.random.default_rng(0)
    large = frame["amount"].to_numpy() > frame["amount"].quantile(1 - share)
    noisy = large[:, None] ^ (rng.random((800, BERNOULLI_FLAGS_FROM)) < 0.1 * share)
    values = (True, False) if booleans else (9.0, 0.0)
    flags = pd.DataFrame(np.where(noisy, *values), columns=[f"f{j}" for j in range(noisy.shape[1])])
    frame = frame.join(flags)
    flagged = VAEAnomalyDetector(random_state=0, max_epochs=15).fit(frame)
    numeric = "f0" in flagged.preprocessor_.layout.numeric_columns
    assert numeric == (share == 0.5) and bool(flagged.architecture_.bernoulli_columns) != numeric
    rebuilt = reconstruct(flagged, frame.head(200))
    assert set(rebuilt["f0"]) <= set(values) and (rebuilt["f0"].dtype == bool) == booleans
    assert (rebuilt["f0"] == np.where(large[:200], *values)).mean() > 0.9


def test_enrich_reads_the_top_rows_back_and_measures_drift(tmp_path: Path, detector) -> None:
    data_in = payments(3000, 2)
    data_in.loc[7, ["amount", "fee"]] = [5000.0, 40.0]  # an anomaly with known values
    data_in["fee"] = data_in["fee"] + np.r_[np.zeros(1500), np.full(1500, 3.0)]  # drift
    path = tmp_path / "in.parquet"
    data_in.to_parquet(path, row_group_size=700)
    scored = detector.score_frame(data_in)
    scored.insert(0, "payment_id", data_in["payment_id"])  # as the flow's top rows carry it
    top = scored.nlargest(5, "score").reset_index(drop=True)
    data = report.ReportData(
        title="t", model_name="m", model_version="1", threshold=detector.threshold_.value,
        threshold_method="iqr", expected_alert_rate=0.01, rows_in=3000, rows_scored=3000,
        rows_quarantined=0, quarantine_reasons={}, score_sample=scored["score"].to_numpy(),
        n_flagged=int(scored["is_anomaly"].sum()), score_quantiles={}, top_anomalies=top,
        input_path=str(path), output_path="o", generated_at="2024-03-05T06:00:00+00:00",
    )  # fmt: skip
    rich = report.enrich(data, detector, str(path))
    first = rich.explanations[0]
    assert first.label == "payment_id = p2-7"
    values = {p.name: p.value for p in first.parts if p.kind == "column"}
    assert values["amount"] == "5000" and values["fee"] == "40"  # row 7 is before the drift
    amount = next(p for p in first.parts if p.name == "amount")
    assert amount.median != "\u2014" and "\u2013" in amount.typical and amount.expected != "\u2014"
    assert float(amount.expected) < 1000  # the model expected an ordinary amount
    assert sum(p.share for p in first.parts) == pytest.approx(1.0)
    assert first.severity.startswith(("p", "above"))
    fee = next(d for d in rich.drift if d.column == "fee")
    assert rich.drift[0].column == "fee" and fee.psi > 0.25
    assert NO_PROFILE not in rich.report_notes
    page = report.render_html(rich)
    assert "p2-7" in page and 'data-alert="drift"' in page
    no_profile = type("Plain", (), {})()
    no_profile.__dict__.update(detector.__dict__, training_profile_=None)
    plain = report.enrich(data, no_profile, str(path))
    assert plain.drift is None and NO_PROFILE in plain.report_notes
    assert plain.explanations[0].parts[0].median == "\u2014"


def test_enrich_survives_an_input_that_is_gone(tmp_path: Path, detector) -> None:
    rows = payments(20, 3)
    top = detector.score_frame(rows).assign(payment_id=rows["payment_id"]).nlargest(3, "score")
    data = report.ReportData(
        title="t", model_name="m", model_version="1", threshold=1.0, threshold_method="iqr",
        expected_alert_rate=0.01, rows_in=20, rows_scored=20, rows_quarantined=0,
        quarantine_reasons={}, score_sample=np.ones(20), n_flagged=1, score_quantiles={},
        top_anomalies=top, input_path="gone", output_path="o", generated_at="2024-03-05",
    )  # fmt: skip
    rich = report.enrich(data, detector, str(tmp_path / "gone.parquet"))
    assert any("could not be read again" in note for note in rich.report_notes)
    assert "could not be read again" in report.render_html(rich)


def test_the_flagged_file_holds_every_flagged_row(tmp_path: Path) -> None:
    scores = pd.DataFrame(
        {"id": range(1000), "score": np.arange(1000.0), "is_anomaly": np.arange(1000) % 7 == 0}
    )
    scores.to_parquet(tmp_path / "scores.parquet", row_group_size=64)
    files = report.write_flagged(tmp_path / "scores.parquet", tmp_path, csv=True)
    flagged = pd.read_parquet(files.parquet)
    assert files.rows == len(flagged) == 143
    assert flagged["id"].tolist() == list(range(0, 1000, 7))
    assert pq.read_schema(files.parquet).names == ["id", "score", "is_anomaly"]
    assert pd.read_csv(files.csv)["id"].tolist() == flagged["id"].tolist()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "flagged.csv",
        "flagged.parquet",
        "scores.parquet",
    ]


def test_quarantine_reasons_are_grouped_and_bounded() -> None:
    result = PartitionResult()
    for start in range(0, 400_000, 100_000):
        values = [f"{i},5" for i in range(start, start + 100_000)]
        reasons = pd.DataFrame(
            {"reason": [f"column 'fee' value '{v}' is not a number" for v in values]}
        )
        result.count_quarantined(reasons)
    assert result.reasons == {"column 'fee': value is not a number": 400_000}
    assert len(result.reason_examples["column 'fee': value is not a number"]) == 3
    assert reason_group("key column 'id' is null") == "key column 'id' is null"
    assert reason_group(
        "timestamp column 'ts' value 'x' is not a timestamp (ISO 8601) or a number"
    ) == ("timestamp column 'ts': value is not a timestamp (ISO 8601) or a number")
    many = PartitionResult()
    many.add_reasons({f"odd reason {i}": 1 for i in range(MAX_REASON_GROUPS + 25)})
    assert len(many.reasons) == MAX_REASON_GROUPS + 1
    assert many.reasons[OTHER_REASONS] == 25
    merged = PartitionResult()
    merged.merge(result, top_n=5)
    merged.merge(result, top_n=5)
    assert merged.reasons == {"column 'fee': value is not a number": 800_000}
    assert merged.reason_examples == result.reason_examples


def test_a_model_without_keys_says_why_values_are_missing(tmp_path: Path) -> None:
    frame = payments(300, 4).drop(columns="payment_id")
    keyless = VAEAnomalyDetector(random_state=0, max_epochs=3).fit(frame)
    frame.to_parquet(tmp_path / "in.parquet")
    top = keyless.score_frame(frame).nlargest(3, "score")
    data = report.ReportData(
        title="t", model_name="m", model_version="1", threshold=1.0, threshold_method="iqr",
        expected_alert_rate=0.01, rows_in=300, rows_scored=300, rows_quarantined=0,
        quarantine_reasons={}, score_sample=np.ones(300), n_flagged=1, score_quantiles={},
        top_anomalies=top, input_path="in", output_path="o", generated_at="2024-03-05",
    )  # fmt: skip
    rich = report.enrich(data, keyless, str(tmp_path / "in.parquet"))
    assert rich.report_notes == (NO_KEYS,)
    assert rich.drift is not None and len(rich.explanations) == 3
    assert rich.explanations[0].parts[0].value == "\u2014"


def test_a_sensor_run_gets_score_parts_and_drift_without_row_values(tmp_path: Path) -> None:
    from flows.pipeline.partitions import score_partition
    from flows.reporting.enrich import WINDOWED
    from vae_core import SensorVAEDetector

    start = pd.Timestamp("2024-05-01")
    rng = np.random.default_rng(0)
    t = np.arange(300)
    frame = pd.concat(
        [
            pd.DataFrame(
                {
                    "ts": start + pd.to_timedelta(t, unit="s"),
                    "device": device,
                    "pressure": np.sin(2 * np.pi * t / 30 + k) + 0.05 * rng.normal(size=300),
                    "temp": 20 + 0.05 * rng.normal(size=300),
                }
            )
            for k, device in enumerate(("p1", "p2"))
        ],
        ignore_index=True,
    )
    detector = SensorVAEDetector(
        timestamp_column="ts", entity_columns=("device",), window_length=5,
        detector_params={"max_epochs": 3, "random_state": 0},
    ).fit(frame)  # fmt: skip
    later = frame.assign(temp=frame["temp"] + 1.0)  # every row drifted in temperature
    later.to_parquet(tmp_path / "in.parquet")
    result = score_partition(
        detector, str(tmp_path / "in.parquet"), None, tmp_path / "s.parquet",
        tmp_path / "q.parquet", batch_size=100, top_n=5,
    )  # fmt: skip
    data = report.ReportData(
        title="t", model_name="m", model_version="1", threshold=detector.threshold_.value,
        threshold_method="iqr", expected_alert_rate=0.01, rows_in=result.rows_in,
        rows_scored=result.rows_scored, rows_quarantined=0, quarantine_reasons={},
        score_sample=result.sample["score"].to_numpy(), n_flagged=result.n_flagged,
        score_quantiles={}, top_anomalies=result.top, input_path="in", output_path="o",
        generated_at="2024-05-02",
    )  # fmt: skip
    rich = report.enrich(data, detector, str(tmp_path / "in.parquet"))
    assert WINDOWED in rich.report_notes
    assert rich.drift is not None and rich.drift[0].column == "temp"
    assert len(rich.explanations) == 5
    assert sum(p.share for p in rich.explanations[0].parts) == pytest.approx(1.0)
    assert "Drift from training" in report.render_html(rich)
