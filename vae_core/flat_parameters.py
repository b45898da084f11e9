"""Parameters and gradients of a module laid out in one contiguous buffer each, for training.

A small network's training step is dominated by per-tensor dispatch, not arithmetic: with
ten parameter tensors, gradient clipping and the optimiser each launch a handful of kernels
per tensor. With every parameter a view into one flat tensor (and every gradient a view
into a second one), clipping is one norm and one multiply, the optimiser step is a few
element-wise kernels on one tensor (``FlatAdamW``), and zeroing the gradients is one fill.
Autograd accumulates into an existing ``.grad`` in place, so the views stay in the flat
buffer across steps.

The views only live for the duration of training: on exit every parameter gets its own
storage back, because shared storage would stop ``safetensors`` from saving the weights
and would tie the parameters of a later ``deepcopy`` or ``load_state_dict`` together.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class FlatParameters:
    """One trainable tensor standing for all of a module's parameters, and its gradient."""

    parameter: nn.Parameter  # shares storage with every parameter of the module
    grad: torch.Tensor  # shares storage with every parameter's .grad

    def zero_grad(self) -> None:
        self.grad.zero_()

    def clip_grad_norm(self, max_norm: float) -> torch.Tensor:
        """Scale the gradient to an L2 norm of at most ``max_norm``; return the norm.

        Same rule as ``torch.nn.utils.clip_grad_norm_`` (coefficient clamped at 1, 1e-6
        in the denominator), computed on the one buffer.
        """
        norm = torch.linalg.vector_norm(self.grad)
        self.grad.mul_((max_norm / (norm + 1e-6)).clamp_(max=1.0))
        return norm


@contextlib.contextmanager
def flat_parameters(module: nn.Module) -> Iterator[FlatParameters]:
    """Lay ``module``'s trainable parameters out in one buffer while the block runs.

    All parameters must share a dtype and device (true of a freshly built model). The
    values are preserved on entry and on exit; only the storage changes.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the module has no trainable parameters")
    dtypes = {(p.dtype, p.device) for p in params}
    if len(dtypes) != 1:
        found = sorted(map(str, dtypes))
        raise ValueError(f"parameters must share one dtype and device, got {found}")
    total = sum(p.numel() for p in params)
    flat = torch.empty(total, dtype=params[0].dtype, device=params[0].device)
    flat_grad = torch.zeros_like(flat)
    offset = 0
    with torch.no_grad():
        for p in params:
            n = p.numel()
            flat[offset : offset + n].copy_(p.reshape(-1))
            p.data = flat[offset : offset + n].view_as(p)
            p.grad = flat_grad[offset : offset + n].view_as(p)
            offset += n
    parameter = nn.Parameter(flat)
    parameter.grad = flat_grad
    try:
        yield FlatParameters(parameter, flat_grad)
    finally:
        with torch.no_grad():
            for p in params:
                p.data = p.data.clone()
                p.grad = None


class FlatAdamW:
    """AdamW on the one flat tensor: decoupled weight decay, bias-corrected moments.

    The update is ``torch.optim.AdamW``'s (its single-tensor path, step for step), written
    as seven in-place kernels. ``torch.optim``'s per-step bookkeeping (hooks, grouping
    tensors by device and dtype, state lookups) costs several times the arithmetic of a
    small network's step, and with one tensor there is nothing for it to organise.
    """

    def __init__(
        self,
        flat: FlatParameters,
        lr: float,
        weight_decay: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        self.flat = flat
        self.lr, self.weight_decay, self.betas, self.eps = lr, weight_decay, betas, eps
        self.exp_avg = torch.zeros_like(flat.parameter, memory_format=torch.preserve_format)
        self.exp_avg_sq = torch.zeros_like(self.exp_avg)
        self.steps = 0

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        self.steps += 1
        param, grad = self.flat.parameter, self.flat.grad
        param.mul_(1.0 - self.lr * self.weight_decay)
        self.exp_avg.lerp_(grad, 1.0 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        bias_correction1 = 1.0 - beta1**self.steps
        bias_correction2_sqrt = math.sqrt(1.0 - beta2**self.steps)
        denom = self.exp_avg_sq.sqrt().div_(bias_correction2_sqrt).add_(self.eps)
        param.addcdiv_(self.exp_avg, denom, value=-self.lr / bias_correction1)
