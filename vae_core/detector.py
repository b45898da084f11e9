"""``VAEAnomalyDetector``: the scikit-learn-style entry point of ``vae_core``."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import Tags

from vae_core import detector_files, persistence
from vae_core.detector_files import detector_manifest, restore_fitted, saved_params
from vae_core.ensemble import architecture_for, split_rows, train_members
from vae_core.errors import EmptyInputError, NotFittedError, SchemaError, TooFewRowsError
from vae_core.features import EncodedData, Preprocessor
from vae_core.kl_weight import fitted_kl_weight
from vae_core.profile import DataProfile, schema_kinds
from vae_core.schema import as_frame, infer_schema
from vae_core.scoring import (
    DEFAULT_NUMERIC_DOF,
    DEFAULT_TOP_K,
    ScoreArrays,
    score_encoded,
    score_schema,
    to_frame,
)
from vae_core.sizing import MIN_STEPS, Sizes
from vae_core.streaming import TabularScorer
from vae_core.threshold import THRESHOLD_METHODS, Threshold, threshold_rule
from vae_core.training import EpochCallback, TrainingConfig, TrainingResult, resolve_device

#: Fewest rows ``fit`` accepts: below this neither a model nor a validation split is sane.
MIN_TRAIN_ROWS = 10
#: Below this many validation rows, the threshold is fitted on all training rows' scores.
MIN_REFERENCE_ROWS = 200


class VAEAnomalyDetector(BaseEstimator):
    """Variational-autoencoder anomaly detector for mixed-type tabular data.

    Parameters only are stored here; ``fit`` learns. ``"auto"`` sizes are derived from the
    training data's shape (rows and encoded width), see ``vae_core.sizing``.

    The outputs follow PyOD's convention, the anomaly-detection ecosystem's:
    ``decision_function`` is higher for more anomalous rows, ``predict`` returns 1 for
    anomalies and 0 otherwise, and ``fit`` leaves ``decision_scores_`` and ``labels_`` for
    the training rows. That is not scikit-learn's outlier contract (-1/+1, lower is more
    abnormal), so the class does not inherit ``OutlierMixin`` nor declare itself an
    outlier detector: code written for that contract (``pred == -1``) would find nothing.

    Parameters
    ----------
    latent_dim, hidden_sizes : int / tuple of int, or "auto"
        Width of the latent code and of the encoder layers (the decoder mirrors them).
    beta : float
        Weight of the KL term in the training loss.
    kl_weight : float or "auto"
        Weight of the KL term in ``score`` (``score = recon_error + kl_weight_ * kl``).
        "auto" fits it on the held-out reference rows, from ``beta`` up to where the KL's
        spread counts about as much as the reconstruction's (``vae_core.kl_weight``); a
        number fixes it (``beta`` scores with the training loss itself).
    max_epochs, batch_size : int or "auto"
        Upper bound on epochs (early stopping usually ends sooner) and rows per step;
        "auto" epochs spend ``vae_core.sizing.step_budget`` gradient steps.
    min_steps : int
        Fewest gradient steps "auto" epochs aim for, however few the rows (0.75 steps per
        row up to 2,000 otherwise).
    learning_rate, weight_decay : float
        AdamW settings.
    validation_fraction : float
        Share of training rows held out for early stopping and the threshold.
    patience : int
        Epochs without a better validation loss before training stops.
    trim_fraction : float
        Share of highest-loss rows of each batch left out of the gradient after
        ``warmup_epochs`` (contamination-robust training); 0 disables it.
    n_models : int
        Ensemble size: members differ only by seed; scores are averaged.
    numeric_dof : float or None
        Degrees of freedom of the Student-t likelihood that numeric columns are scored with
        (training fits a Gaussian); None scores with the Gaussian. See ``vae_core.scoring``.
    discrete_tails : bool
        Add the tail evidence of numeric columns with 3 to 32 distinct training values
        (ratings, small counts, intensities) to their terms, and that of a row's flags
        (two-valued columns) taken together. See ``vae_core.discrete_tails``.
    threshold_method : {"iqr", "contamination", "fpr", "pot", "conformal"}
        How the label-free decision threshold is fitted, see ``vae_core.threshold``.
    contamination, target_fpr, pot_risk, pot_initial_quantile, iqr_factor, fdr : float
        Parameters of the threshold methods.
    iqr_min_alert_rate : float
        ``iqr``: the fence is lowered to the reference scores' (1 - rate) quantile where
        it lies above it, so that it cannot flag nothing; 0 keeps the plain fence.
    conformal_trim : bool
        ``conformal``: calibrate on the reference scores up to the far-out fence only.
    key_columns : sequence of str
        Columns carried through but never modelled (ids, timestamps, entities).
    device : str
        "auto" (CUDA when present, else CPU), "cpu", "cuda", "cuda:1", ...
    random_state : int or None
        Seed of initialisation, split and shuffling; same seed, same scores on CPU.
    verbose : bool
        Show a progress bar per ensemble member.

    Attributes
    ----------
    kl_weight_ : float
        The KL term's weight in ``score``.
    threshold_ : Threshold
        The fitted decision threshold: ``predict`` flags scores above ``threshold_.value``.
        A record with its method and reference quantiles, where PyOD's is the float alone.
    decision_scores_ : ndarray of shape (n_samples,)
        ``decision_function`` of the training rows, in their order (not saved by ``save``).
    labels_ : ndarray of shape (n_samples,)
        ``predict`` of the training rows: 1 above the threshold, 0 otherwise (not saved).
    """

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        # What fit accepts: missing values anywhere, string, boolean and pandas categorical
        # columns (modelled as categories), no target. estimator_type stays None: the
        # outputs are PyOD's, not those scikit-learn's "outlier_detector" type promises.
        tags.input_tags.allow_nan = True
        tags.input_tags.string = True
        tags.input_tags.categorical = True
        tags.target_tags.required = False
        return tags

    def __init__(
        self,
        *,
        latent_dim: int | str = "auto",
        hidden_sizes: Sequence[int] | str = "auto",
        beta: float = 1.0,
        kl_weight: float | str = "auto",
        max_epochs: int | str = "auto",
        batch_size: int | str = "auto",
        min_steps: int = MIN_STEPS,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-4,
        validation_fraction: float = 0.15,
        patience: int = 10,
        trim_fraction: float = 0.2,
        warmup_epochs: int = 2,
        n_models: int = 1,
        numeric_dof: float | None = DEFAULT_NUMERIC_DOF,
        discrete_tails: bool = True,
        threshold_method: str = "iqr",
        contamination: float = 0.05,
        target_fpr: float = 0.01,
        pot_risk: float = 0.01,
        pot_initial_quantile: float = 0.9,
        iqr_factor: float = 3.0,
        iqr_min_alert_rate: float = 0.05,
        fdr: float = 0.1,
        conformal_trim: bool = False,
        key_columns: Sequence[str] = (),
        device: str = "auto",
        random_state: int | None = None,
        verbose: bool = False,
    ):
        self.latent_dim = latent_dim
        self.hidden_sizes = hidden_sizes
        self.beta = beta
        self.kl_weight = kl_weight
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.min_steps = min_steps
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.trim_fraction = trim_fraction
        self.warmup_epochs = warmup_epochs
        self.n_models = n_models
        self.numeric_dof = numeric_dof
        self.discrete_tails = discrete_tails
        self.threshold_method = threshold_method
        self.contamination = contamination
        self.target_fpr = target_fpr
        self.pot_risk = pot_risk
        self.pot_initial_quantile = pot_initial_quantile
        self.iqr_factor = iqr_factor
        self.iqr_min_alert_rate = iqr_min_alert_rate
        self.fdr = fdr
        self.conformal_trim = conformal_trim
        self.key_columns = key_columns
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # -- fitting -----------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.threshold_method not in THRESHOLD_METHODS:
            raise ValueError(
                f"threshold_method={self.threshold_method!r}; use one of {THRESHOLD_METHODS}."
            )
        for name in ("contamination", "target_fpr", "pot_risk", "validation_fraction"):
            value = getattr(self, name)
            if not 0.0 < value < 0.5:
                raise ValueError(f"{name}={value!r} must lie strictly between 0 and 0.5.")
        if not 0.0 <= self.trim_fraction < 0.5:
            raise ValueError(f"trim_fraction={self.trim_fraction!r} must be in [0, 0.5).")
        if self.iqr_factor <= 0:
            raise ValueError(f"iqr_factor={self.iqr_factor!r} must be positive.")
        threshold_rule(self.threshold_method, **self.get_params())  # its bounds, before fitting
        if int(self.n_models) < 1:
            raise ValueError(f"n_models={self.n_models!r} must be at least 1.")
        if self.numeric_dof is not None and not self.numeric_dof > 0:
            raise ValueError(f"numeric_dof={self.numeric_dof!r} must be positive or None.")
        if self.kl_weight != "auto" and not (
            isinstance(self.kl_weight, int | float) and 0 <= self.kl_weight < math.inf
        ):
            raise ValueError(
                f'kl_weight={self.kl_weight!r} must be "auto" or a non-negative number.'
            )

    def fit(
        self,
        X: pd.DataFrame | np.ndarray,
        y: Any = None,
        *,
        epoch_callback: EpochCallback | None = None,
    ) -> VAEAnomalyDetector:
        """Learn preprocessing, the VAE(s) and the threshold from unlabeled data ``X``.

        ``y`` is ignored (present for scikit-learn pipelines). ``epoch_callback`` is called
        with an ``EpochRecord`` after every epoch of every ensemble member.
        """
        self._check_params()
        frame, from_array = as_frame(X)
        _check_training_rows(len(frame))
        seed = self._seed()
        schema = infer_schema(frame, self.key_columns, from_array)
        preprocessor = Preprocessor.fit(frame, schema, discrete_tails=self.discrete_tails)
        encoded = preprocessor.transform(frame)
        device = resolve_device(self.device)
        val_index, train, validation = split_rows(encoded, self.validation_fraction, seed, device)
        arch, sizes = architecture_for(
            preprocessor.layout,
            len(train.inputs),
            self.latent_dim,
            self.hidden_sizes,
            self.max_epochs,
            self.batch_size,
            self.min_steps,
        )
        callbacks = [epoch_callback] if epoch_callback is not None else []
        config = self._training_config(sizes, seed, device)
        models, results = train_members(
            arch, (train, validation), int(self.n_models), self.beta, config, callbacks
        )
        self.schema_ = schema
        self.preprocessor_ = preprocessor
        self.architecture_ = arch
        self.models_ = models
        self.training_results_: list[TrainingResult] = results
        self.random_state_ = seed
        self.device_ = device
        self.n_features_in_ = len(schema.columns)
        self.feature_names_in_ = np.asarray(schema.feature_names, dtype=object)
        self._fit_threshold(encoded, val_index)
        # For data gates and drift reports; draws no random numbers: scores are unchanged.
        self.training_profile_: DataProfile | None = DataProfile.from_frame(
            frame, schema.feature_names, schema_kinds(schema)
        )
        return self

    def _seed(self) -> int:
        if self.random_state is not None:
            return int(self.random_state)
        # Drawn without a seed, the entropy is one int (typed as possibly a sequence).
        return int(cast(int, np.random.SeedSequence().entropy) % (2**31))

    def _training_config(self, sizes: Sizes, seed: int, device: torch.device) -> TrainingConfig:
        return TrainingConfig(
            max_epochs=sizes.max_epochs,
            batch_size=sizes.batch_size,
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            patience=self.patience,
            trim_fraction=self.trim_fraction,
            warmup_epochs=self.warmup_epochs,
            seed=seed,
            device=str(device),
            progress=self.verbose,
        )

    def _fit_threshold(self, encoded: EncodedData, val_index: np.ndarray) -> None:
        """The threshold from the reference scores; the training rows' scores and labels."""
        # A quantile of a few dozen scores is noise: below MIN_REFERENCE_ROWS held-out rows
        # the threshold uses every training row's score (a little optimistic, far steadier).
        reference = encoded.take(val_index) if len(val_index) >= MIN_REFERENCE_ROWS else encoded
        parts = self._score_parts(reference, self.beta)
        self.kl_weight_: float = (
            fitted_kl_weight(parts.recon_error, parts.kl, self.beta)
            if self.kl_weight == "auto"
            else float(self.kl_weight)
        )
        reference_scores = parts.recon_error + self.kl_weight_ * parts.kl
        rule = threshold_rule(self.threshold_method, **self.get_params())
        self.threshold_: Threshold = rule.fit(reference_scores)
        # PyOD's training-row outputs. When the reference is every row, its scores are
        # exactly decision_function(X). A held-out reference covers only the validation
        # rows, so all rows are scored once more: one forward pass over X in eval mode (a
        # fraction of one training epoch), no random numbers drawn, the models unchanged.
        training_scores = (
            reference_scores if reference is encoded else self._score_arrays(encoded).score
        )
        self.decision_scores_: np.ndarray = training_scores
        self.labels_: np.ndarray = (training_scores > self.threshold_.value).astype(np.int64)

    # -- scoring -----------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "models_"):
            raise NotFittedError(
                "this VAEAnomalyDetector is not fitted; call fit(X) or "
                "VAEAnomalyDetector.load(path) first."
            )

    def _score_arrays(self, encoded: EncodedData) -> ScoreArrays:
        return self._score_parts(encoded, self.kl_weight_)

    def _score_parts(self, encoded: EncodedData, kl_weight: float) -> ScoreArrays:
        return score_encoded(
            self.models_,
            encoded,
            self.preprocessor_.layout,
            kl_weight,
            self.device_,
            numeric_dof=self.numeric_dof,
        )

    def _encode(self, X: pd.DataFrame | np.ndarray, source: str) -> tuple[EncodedData, pd.Index]:
        self._check_fitted()
        frame, _ = as_frame(X)
        if self.schema_.from_array and not isinstance(X, pd.DataFrame):
            width = frame.shape[1]
            if width != self.n_features_in_:
                raise SchemaError(
                    f"{source} has {width} columns; the model was fitted on "
                    f"{self.n_features_in_}. Pass the same features in the same order."
                )
        self.schema_.validate(frame, source)
        return self.preprocessor_.transform(frame), frame.index

    def score_frame(
        self, X: pd.DataFrame | np.ndarray, top_k: int = DEFAULT_TOP_K, source: str = "input"
    ) -> pd.DataFrame:
        """Score columns aligned with ``X``: recon_error, kl, score, is_anomaly, top features.

        ``source`` names the data in error messages (a file path, for example).
        """
        encoded, index = self._encode(X, source)
        return to_frame(self._score_arrays(encoded), self.threshold_, index, top_k)

    def encode(self, X: pd.DataFrame | np.ndarray, source: str = "input") -> EncodedData:
        """Check ``X`` against the training schema and preprocess it for ``score_arrays``.

        ``score_frame`` is ``encode``, ``score_arrays`` and ``scoring.to_frame`` in turn;
        a pipeline can run the three stages in different threads.
        """
        return self._encode(X, source)[0]

    def score_arrays(self, encoded: EncodedData) -> ScoreArrays:
        """Scores and per-column shares of rows ``encode`` prepared: the model's work."""
        self._check_fitted()
        return self._score_arrays(encoded)

    def decision_function(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Anomaly score per row, higher is more anomalous (deterministic; PyOD's sense)."""
        encoded, _ = self._encode(X, "input")
        return self._score_arrays(encoded).score

    def negative_elbo(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Per row, ``recon_error + beta * kl``: the quantity training minimised.

        How well a model explains data, comparable between models whatever KL weight their
        scores were fitted with (the promotion gate's fit check compares it).
        """
        return self.scores_and_losses(X)[1]

    def scores_and_losses(self, X: pd.DataFrame | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``decision_function(X)`` and ``negative_elbo(X)`` from one scoring pass."""
        encoded, _ = self._encode(X, "input")
        parts = self._score_arrays(encoded)
        return parts.score, parts.recon_error + self.beta * parts.kl

    def score_samples(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Negated score: higher is more normal, ``-decision_function(X)``.

        Kept although PyOD defines no ``score_samples``: the name means "higher is more
        normal" in every scikit-learn detector (IsolationForest, LocalOutlierFactor, ...),
        so code that ranks rows by it works unchanged here, and no PyOD method clashes.
        """
        return -self.decision_function(X)

    def predict(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """1 for rows scored above ``threshold_``, 0 otherwise."""
        return (self.decision_function(X) > self.threshold_.value).astype(np.int64)

    def fit_predict(self, X: pd.DataFrame | np.ndarray, y: Any = None, **kwargs: Any) -> np.ndarray:
        """``fit(X).predict(X)``: 1 for training rows above the threshold, 0 otherwise."""
        return self.fit(X, **kwargs).predict(X)

    # -- the detector protocol (vae_core.streaming) ------------------------------------
    #: Saved in the manifest; ``vae_core.model_kinds.load_model`` reads it back.
    kind: ClassVar[str] = "tabular"
    #: Rows are scored independently: an input may be split and scored in parallel.
    ordered_stream: ClassVar[bool] = False

    def stream(self, top_k: int = DEFAULT_TOP_K) -> TabularScorer:
        """A batch scorer for jobs that read their input in batches (any order)."""
        self._check_fitted()
        return TabularScorer(self, top_k)

    def required_columns(self) -> tuple[str, ...]:
        """Carried columns every input must hold: none (key columns are optional here)."""
        return ()

    def output_schema(self, top_k: int = DEFAULT_TOP_K) -> pa.Schema:
        """Types of the score columns, in output order."""
        self._check_fitted()
        p_value = bool(self.threshold_.calibration)
        return score_schema(len(self.schema_.columns), top_k, p_value)

    # -- persistence -------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str], overwrite: bool = False) -> Path:
        """Write the fitted model to directory ``path`` (weights + JSON, never pickle)."""
        self._check_fitted()
        states = [m.state_dict() for m in self.models_]
        manifest, extra = detector_manifest(self), detector_files.profile_files(self)
        return persistence.save_model(path, manifest, states, overwrite, extra_json=extra)

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str = "cpu") -> VAEAnomalyDetector:
        """Load a model saved by ``save``; weights are checked against their sha256."""
        manifest, states = persistence.load_model(path)
        detector = cls(**saved_params(manifest))
        restore_fitted(detector, manifest, states, resolve_device(device))
        detector.training_profile_ = detector_files.read_profile(path)
        return detector


def _check_training_rows(n_rows: int) -> None:
    if n_rows == 0:
        raise EmptyInputError("fit() got 0 rows; pass the training data.")
    if n_rows < MIN_TRAIN_ROWS:
        raise TooFewRowsError(
            f"fit() got {n_rows} rows; at least {MIN_TRAIN_ROWS} are needed to "
            "train and hold out a validation split. Train on more history."
        )
