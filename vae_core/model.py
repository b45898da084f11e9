"""The variational autoencoder as a plain ``nn.Module``: networks and heads, nothing else.

Encoder MLP -> (mu, logvar) of q(z|x) -> reparameterised z -> decoder MLP mirroring the
encoder -> one likelihood head per feature type:

- numeric: Gaussian mean per column, with a learned per-column log-variance. The variance
  is a parameter, not a decoder output, so the model cannot explain an anomaly away by
  predicting a wide variance for that one row; a floor keeps a near-perfectly
  reconstructed column from dominating every score.
- categorical: logits over each column's levels (softmax / cross-entropy); a two-valued
  numeric column (flag) listed in ``bernoulli_columns`` has one Bernoulli logit.
- missing-value indicators: one Bernoulli logit each.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import nn

from vae_core.features import level_widths


@dataclass(frozen=True)
class VAEArchitecture:
    """Everything needed to rebuild the module before loading its weights."""

    input_dim: int
    n_numeric: int
    cardinalities: tuple[int, ...]
    n_missing: int
    hidden_sizes: tuple[int, ...]
    latent_dim: int
    min_log_var: float = 2 * math.log(0.7)
    #: Categorical columns with one input and one logit (``FeatureLayout.bernoulli_columns``).
    bernoulli_columns: tuple[int, ...] = ()

    @property
    def category_widths(self) -> tuple[int, ...]:
        """Logits per categorical column: its levels, or 1 for a Bernoulli flag."""
        return level_widths(self.cardinalities, self.bernoulli_columns)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VAEArchitecture:
        return cls(
            input_dim=int(data["input_dim"]),
            n_numeric=int(data["n_numeric"]),
            cardinalities=tuple(int(c) for c in data["cardinalities"]),
            n_missing=int(data["n_missing"]),
            hidden_sizes=tuple(int(h) for h in data["hidden_sizes"]),
            latent_dim=int(data["latent_dim"]),
            min_log_var=float(data["min_log_var"]),
            # Models saved before flags had one logit have no such list.
            bernoulli_columns=tuple(int(j) for j in data.get("bernoulli_columns", ())),
        )


class VAEOutput(NamedTuple):
    """Named outputs of one forward pass."""

    mu: torch.Tensor  # (n, latent) mean of q(z|x)
    logvar: torch.Tensor  # (n, latent) log-variance of q(z|x)
    z: torch.Tensor  # (n, latent) the latent code that was decoded
    numeric_mean: torch.Tensor  # (n, n_numeric)
    numeric_logvar: torch.Tensor  # (n_numeric,) shared by every row
    category_logits: torch.Tensor  # (n, sum(category_widths)), each column's logits in turn
    missing_logits: torch.Tensor  # (n, n_missing)


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(fan_in, fan_out), nn.SiLU()]
    return nn.Sequential(*layers)


def _run_mlp(mlp: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``mlp(x)`` for an ``_mlp`` stack, calling the functions instead of the modules.

    A module call costs a few microseconds of Python (hooks, dispatch); on small networks
    that is a noticeable share of a training step, and these modules have no hooks.
    """
    for index in range(0, len(mlp), 2):
        linear = cast(nn.Linear, mlp[index])  # _mlp puts a Linear at every even index
        x = F.silu(F.linear(x, linear.weight, linear.bias))
    return x


class TabularVAE(nn.Module):
    """Fully connected VAE with mixed-type likelihood heads."""

    def __init__(self, arch: VAEArchitecture):
        super().__init__()
        self.arch = arch
        hidden = list(arch.hidden_sizes)
        self.encoder = _mlp([arch.input_dim, *hidden])
        # Mean and log-variance of q(z|x) from one layer (one matmul, split in ``encode``).
        self.to_latent = nn.Linear(hidden[-1], 2 * arch.latent_dim)
        self.decoder = _mlp([arch.latent_dim, *reversed(hidden)])
        # One linear layer feeds every head (split in ``decode``): a head with no columns
        # then costs nothing, instead of being a zero-width layer.
        self.head_sizes = (arch.n_numeric, sum(arch.category_widths), arch.n_missing)
        self.output_head = nn.Linear(hidden[0], sum(self.head_sizes))
        self.numeric_log_var = nn.Parameter(torch.zeros(arch.n_numeric))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # Models saved before the two latent layers were merged hold ``to_mu.*`` and
        # ``to_logvar.*``: stacked, they are exactly ``to_latent``.
        for kind in ("weight", "bias"):
            mu_key, logvar_key = f"{prefix}to_mu.{kind}", f"{prefix}to_logvar.{kind}"
            if mu_key in state_dict and logvar_key in state_dict:
                state_dict[f"{prefix}to_latent.{kind}"] = torch.cat(
                    [state_dict.pop(mu_key), state_dict.pop(logvar_key)]
                )
        super()._load_from_state_dict(state_dict, prefix, *args)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.to_latent(_run_mlp(self.encoder, x)).chunk(2, dim=1)
        # Bounded log-variance: exp() of an unbounded output overflows on outlier rows.
        return mu, logvar.clamp(-12.0, 8.0)

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        numeric_mean, category_logits, missing_logits = torch.split(
            self.output_head(_run_mlp(self.decoder, z)), list(self.head_sizes), dim=1
        )
        return numeric_mean, category_logits, missing_logits

    def forward(self, x: torch.Tensor, sample: bool | None = None) -> VAEOutput:
        """Encode, sample (training) or take the mean (evaluation), decode.

        ``sample`` defaults to ``self.training``: scores are deterministic unless asked.
        """
        mu, logvar = self.encode(x)
        if sample if sample is not None else self.training:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        else:
            z = mu
        numeric_mean, category_logits, missing_logits = self.decode(z)
        numeric_logvar = self.numeric_log_var.clamp(min=self.arch.min_log_var)
        return VAEOutput(
            mu, logvar, z, numeric_mean, numeric_logvar, category_logits, missing_logits
        )
