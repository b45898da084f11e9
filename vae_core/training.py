"""A small, model-agnostic fit loop: shuffled tensor batches, AdamW, early stopping.

The loop knows nothing about VAEs: it gets a module, a function returning the per-row loss
of a batch, and tensors already on the device. Batches are slices of a tensor permuted once
per epoch (no per-item ``Dataset`` overhead); the module's parameters are trained in one
flat buffer (``vae_core.flat_parameters``). Buffers are not trained and not restored.

Contamination-robust training: after a warm-up, the ``trim_fraction`` highest-loss rows of
each batch are left out of the gradient. Deep generative models fit inliers before outliers
(the inlier-memorisation effect), so early in training the highest-loss rows are mostly
anomalies, and leaving them out keeps the model from learning to reconstruct them.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NoReturn

import torch
from torch import nn
from tqdm.auto import tqdm

from vae_core.errors import NonFiniteLossError
from vae_core.flat_parameters import FlatAdamW, FlatParameters, flat_parameters
from vae_core.losses import Batch

RowLoss = Callable[[nn.Module, Batch], torch.Tensor]


@dataclass(frozen=True)
class EpochRecord:
    """What one epoch did; passed to every callback."""

    member: int  # ensemble member being trained
    epoch: int
    train_loss: float
    val_loss: float
    best_val_loss: float
    seconds: float


EpochCallback = Callable[[EpochRecord], None]


@dataclass(frozen=True)
class TrainingConfig:
    max_epochs: int
    batch_size: int
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 10
    grad_clip_norm: float = 5.0
    trim_fraction: float = 0.05
    warmup_epochs: int = 2
    seed: int = 0
    device: str = "cpu"
    progress: bool = False


@dataclass
class TrainingResult:
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = math.inf
    stopped_early: bool = False


def resolve_device(device: str) -> torch.device:
    """``"auto"`` picks CUDA when present, else CPU; anything else is passed to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def trimmed_mean(row_loss: torch.Tensor, trim_fraction: float) -> torch.Tensor:
    """Mean over the rows with the lowest loss, leaving out ``trim_fraction`` of them."""
    n_keep = len(row_loss) - int(trim_fraction * len(row_loss))
    if n_keep >= len(row_loss):
        return row_loss.mean()
    kept, _ = torch.topk(row_loss, max(n_keep, 1), largest=False, sorted=False)
    return kept.mean()


def _raise_non_finite(value: float, epoch: int, where: str) -> NoReturn:
    raise NonFiniteLossError(
        f"the {where} loss became {value} at epoch {epoch}. Lower the learning "
        "rate, check the data for values the preprocessing cannot bound, or fit with "
        "a different random_state."
    )


def evaluate(model: nn.Module, loss_fn: RowLoss, data: Batch, batch_size: int) -> torch.Tensor:
    """Per-row loss of ``data`` in evaluation mode (deterministic), batched."""
    was_training = model.training
    model.eval()
    parts = []
    with torch.inference_mode():
        for start in range(0, len(data), batch_size):
            chunk = Batch(*(t[start : start + batch_size] for t in data))
            parts.append(loss_fn(model, chunk).float())
    model.train(was_training)
    return torch.cat(parts) if parts else torch.zeros(0)


def fit(
    model: nn.Module,
    loss_fn: RowLoss,
    train: Batch,
    validation: Batch,
    config: TrainingConfig,
    callbacks: Sequence[EpochCallback] = (),
    member: int = 0,
) -> TrainingResult:
    """Train ``model`` in place, restore the weights of the best validation epoch."""
    device = torch.device(config.device)
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    # The parameters live in one flat buffer while training, so clipping, the optimiser
    # step and zeroing are a few kernels instead of a few per parameter tensor: on small
    # networks that per-tensor dispatch costs more than the arithmetic.
    with flat_parameters(model) as flat:
        optimizer = FlatAdamW(flat, lr=config.learning_rate, weight_decay=config.weight_decay)
        steps = _Steps(model, loss_fn, config, device, flat, optimizer)
        result = _train_epochs(steps, train, validation, callbacks, member, generator)
    model.eval()
    return result


def _train_epochs(
    steps: _Steps,
    train: Batch,
    validation: Batch,
    callbacks: Sequence[EpochCallback],
    member: int,
    generator: torch.Generator,
) -> TrainingResult:
    """The epochs, early stopping and the best epoch's weights restored at the end."""
    model, config, flat = steps.model, steps.config, steps.flat
    result = TrainingResult()
    best_weights = flat.parameter.detach().clone()
    epochs_without_gain = 0
    bar = tqdm(
        range(config.max_epochs),
        disable=not config.progress,
        desc=f"training model {member + 1}",
        unit="epoch",
        leave=False,
    )
    for epoch in bar:
        started = time.perf_counter()
        model.train()
        order = torch.randperm(len(train), generator=generator).to(steps.device)
        trim = config.trim_fraction if epoch >= config.warmup_epochs else 0.0
        train_loss = steps.epoch(train.select(order), trim, epoch)
        val_value = _validation_loss(model, steps.loss_fn, validation, config, epoch)
        if _improves(val_value, result.best_val_loss):
            result.best_val_loss, result.best_epoch = val_value, epoch
            best_weights.copy_(flat.parameter.detach())
            epochs_without_gain = 0
        else:
            epochs_without_gain += 1
        record = EpochRecord(
            member,
            epoch,
            train_loss,
            val_value,
            result.best_val_loss,
            time.perf_counter() - started,
        )
        result.history.append(record)
        bar.set_postfix(train=f"{record.train_loss:.3f}", val=f"{val_value:.3f}")
        for callback in callbacks:
            callback(record)
        if epochs_without_gain >= config.patience:
            result.stopped_early = True
            break
    bar.close()
    with torch.no_grad():
        flat.parameter.copy_(best_weights)
    return result


@dataclass(frozen=True)
class _Steps:
    """The optimiser steps of one epoch: what they need, and the loop over the batches."""

    model: nn.Module
    loss_fn: RowLoss
    config: TrainingConfig
    device: torch.device
    flat: FlatParameters
    optimizer: FlatAdamW

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        # bf16 autocast on CUDA; on CPU plain float32 (no context object built per step).
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def epoch(self, shuffled: Batch, trim: float, epoch: int) -> float:
        """Step through ``shuffled`` in batches; the mean training loss of the epoch."""
        config, flat = self.config, self.flat
        on_cpu = self.device.type == "cpu"
        # On CPU each loss is read before its step (cheap there), so no weight ever takes
        # a non-finite update. On a GPU that read would make the CPU wait for the device
        # after every batch, so the losses are summed on the device and the epoch's sum
        # is checked instead (the run fails either way, before a best-weights copy).
        total_on_device, total, n_batches = torch.zeros((), device=self.device), 0.0, 0
        for start in range(0, len(shuffled), config.batch_size):
            batch = Batch(*(t[start : start + config.batch_size] for t in shuffled))
            if len(batch) < 2:
                continue  # a 1-row remainder adds noise and nothing else
            with self.autocast():
                loss = trimmed_mean(self.loss_fn(self.model, batch).float(), trim)
            if on_cpu:
                value = loss.item()
                if not math.isfinite(value):
                    _raise_non_finite(value, epoch, "training")
                total += value
            else:
                total_on_device += loss.detach()
            flat.zero_grad()
            loss.backward()
            flat.clip_grad_norm(config.grad_clip_norm)
            self.optimizer.step()
            n_batches += 1
        if not on_cpu:
            total = total_on_device.item()
        # A non-finite step makes the epoch's sum non-finite: checked here, before the
        # weights of this epoch can become the best ones.
        if not math.isfinite(total):
            _raise_non_finite(total, epoch, "training")
        return total / max(n_batches, 1)


def _validation_loss(
    model: nn.Module, loss_fn: RowLoss, validation: Batch, config: TrainingConfig, epoch: int
) -> float:
    """Trimmed mean loss of the validation rows; a non-finite one fails the run."""
    # Validation is as contaminated as training: trim it the same way, at every epoch
    # (warm-up included) so that losses of different epochs stay comparable.
    val_value = float(
        trimmed_mean(
            evaluate(model, loss_fn, validation, 4 * config.batch_size), config.trim_fraction
        )
    )
    if not math.isfinite(val_value):
        _raise_non_finite(val_value, epoch, "validation")
    return val_value


def _improves(val_value: float, best_val_loss: float) -> bool:
    """Whether a validation loss beats the best so far by more than a relative 1e-4."""
    return not math.isfinite(best_val_loss) or val_value < best_val_loss - (
        1e-4 * abs(best_val_loss)
    )
