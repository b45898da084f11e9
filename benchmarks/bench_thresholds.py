"""Flag quality of every threshold rule from one fit per set and seed.

The harnesses' protocols (``bench_tabular.py``: at most ``--max-rows`` rows, stratified,
then a stratified 70/30 split per seed; ``bench_mixed.py`` for NSL-KDD: attacks sampled
to 5% of rows), the project's detector fitted once with its defaults. The reference
scores its threshold is fitted on are kept at fit, so every rule is applied to the same
scores:

- ``fence``: the default, Tukey's far-out fence (``predict``);
- ``conformal@q``: ``ConformalFDR(q)``'s fixed threshold, every reference score as
  calibration (BH finds nothing in the reference: its highest score, whatever ``q``);
- ``conformal_trim@q``: ``ConformalFDR(q, trim=True)``'s fixed threshold, calibrated on
  the reference scores up to the far-out fence;
- ``bh_batch@q``: Benjamini-Hochberg over the whole test part at once, on the conformal
  p-values against every reference score (the guarantee over that batch);
- ``bh_batch_trim@q``: the same against the trimmed calibration;
- ``fence@k``: Tukey's fence at ``k`` IQR above the third quartile (the default is 3);
- ``capped@q``: the far-out fence, lowered to the reference scores' ``q`` quantile where it
  lies above it, so that it flags at least about ``1 - q`` of rows like the reference.

    python benchmarks/bench_thresholds.py ../shared/datasets/adbench OUT.jsonl
    python benchmarks/bench_thresholds.py ../shared/datasets/nslkdd OUT.jsonl --mixed
    python benchmarks/bench_thresholds.py OUT.jsonl --summary   # mean per rule
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score
from sklearn.model_selection import train_test_split

import vae_core.detector as detector_module
from vae_core import VAEAnomalyDetector
from vae_core.threshold import ConformalFDR, IQRFence, benjamini_hochberg, conformal_p_values

SEEDS = (0, 1, 2)
FDRS = (0.05, 0.1, 0.2)
FENCE_FACTORS = (1.0, 1.5, 2.0, 3.0, 4.5)
CAP_QUANTILES = (0.9, 0.95, 0.98, 0.99)


def tabular_split(path: Path, seed: int, max_rows: int) -> tuple:
    frame = pd.read_parquet(path)
    y = frame.pop("label").to_numpy()
    x = frame.to_numpy(dtype=np.float64)
    if max_rows and len(x) > max_rows:
        x, _, y, _ = train_test_split(x, y, train_size=max_rows, stratify=y, random_state=seed)
    return train_test_split(x, y, test_size=0.3, stratify=y, random_state=seed)


def mixed_split(path: Path, seed: int, rate: float = 0.05) -> tuple:
    frame = pd.read_parquet(path).drop(columns="label")
    normal, attack = frame[frame.is_attack == 0], frame[frame.is_attack == 1]
    n_attack = int(round(len(normal) * rate / (1 - rate)))
    data = pd.concat([normal, attack.sample(n_attack, random_state=seed)])
    y = data.pop("is_attack").to_numpy()
    return train_test_split(data, y, test_size=0.3, stratify=y, random_state=seed)


class _KeepReference:
    """Wraps ``threshold_rule`` in the detector module to keep the reference scores."""

    def __init__(self) -> None:
        self.scores: np.ndarray | None = None
        self._original = detector_module.threshold_rule

    def __call__(self, method: str, **params: float):
        rule = self._original(method, **params)
        keeper = self

        class _Kept:
            def fit(self, scores: np.ndarray):
                keeper.scores = np.asarray(scores, dtype=np.float64).copy()
                return rule.fit(scores)

        return _Kept()


def rule_flags(reference: np.ndarray, test_scores: np.ndarray) -> dict[str, np.ndarray]:
    """The flags of every rule on the test scores."""
    finite = reference[np.isfinite(reference)]
    flags = {}
    for fdr in FDRS:
        for trim, suffix in ((False, ""), (True, "_trim")):
            rule = ConformalFDR(fdr, trim)
            flags[f"conformal{suffix}@{fdr:g}"] = test_scores > rule.fit(finite).value
            p_values = conformal_p_values(test_scores, rule.calibration(finite))
            flags[f"bh_batch{suffix}@{fdr:g}"] = benjamini_hochberg(p_values, fdr)
    for factor in FENCE_FACTORS:
        flags[f"fence@{factor:g}"] = test_scores > IQRFence(factor).fit(finite).value
    fence = IQRFence().fit(finite).value
    for q in CAP_QUANTILES:
        flags[f"capped@{q:g}"] = test_scores > min(fence, float(np.quantile(finite, q)))
    return flags


def run(name: str, split: tuple, seed: int) -> dict:
    x_train, x_test, _, y_test = split
    keeper = _KeepReference()
    detector_module.threshold_rule = keeper
    try:
        detector = VAEAnomalyDetector(random_state=seed).fit(x_train)
    finally:
        detector_module.threshold_rule = keeper._original
    scores = detector.decision_function(x_test)
    flags = {"fence": scores > detector.threshold_.value}
    flags.update(rule_flags(keeper.scores, scores))
    record = {
        "dataset": name,
        "seed": seed,
        "auroc": float(roc_auc_score(y_test, scores)),
        "ap": float(average_precision_score(y_test, scores)),
    }
    for rule, flagged in flags.items():
        record[f"f1 {rule}"] = float(f1_score(y_test, flagged, zero_division=0))
        # The realised false-discovery proportion: the share of normal rows among flags.
        record[f"fdp {rule}"] = float(np.mean(y_test[flagged] == 0)) if flagged.any() else 0.0
        record[f"flagged {rule}"] = float(np.mean(flagged))
    return record


def summary(paths: list[Path]) -> None:
    rows = pd.DataFrame([json.loads(line) for p in paths for line in p.read_text().splitlines()])
    per_set = rows.groupby("dataset").mean(numeric_only=True)
    rules = [c[3:] for c in rows.columns if c.startswith("f1 ")]
    print(f"{len(per_set)} sets, {len(rows)} fits; mean over sets of the per-set means")
    print("| rule | mean flag F1 | mean FDP | mean share flagged | sets with F1 <= 0.06 |")
    print("|---|---|---|---|---|")
    for rule in rules:
        f1 = per_set[f"f1 {rule}"]
        print(
            f"| {rule} | {f1.mean():.3f} | {per_set[f'fdp {rule}'].mean():.3f} | "
            f"{per_set[f'flagged {rule}'].mean():.3f} | {(f1 <= 0.06).sum()} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--mixed", action="store_true", help="NSL-KDD's protocol")
    parser.add_argument("--summary", action="store_true")
    parser.add_argument("--max-rows", type=int, default=10_000)
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    parser.add_argument("--only", default="", help="comma list of dataset names")
    args = parser.parse_args()
    if args.summary:
        summary(args.paths)
        return
    data, out = args.paths
    torch.set_num_threads(1)
    files = sorted(data.glob("*.parquet")) if data.is_dir() else [data]
    if args.only:
        files = [f for f in files if f.stem in args.only.split(",")]
    done = set()
    if out.exists():
        done = {(r["dataset"], r["seed"]) for r in map(json.loads, out.read_text().splitlines())}
    with out.open("a") as sink:
        for path in files:
            for seed in map(int, args.seeds.split(",")):
                if (path.stem, seed) in done:
                    continue
                if args.mixed:
                    split = mixed_split(path, seed)
                else:
                    split = tabular_split(path, seed, args.max_rows)
                record = run(path.stem, split, seed)
                sink.write(json.dumps(record) + "\n")
                sink.flush()
                print(path.stem, seed, f"auroc {record['auroc']:.3f}", flush=True)


if __name__ == "__main__":
    main()
