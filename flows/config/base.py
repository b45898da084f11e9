"""What every settings model shares: frozen, unknown keys refused, and the error type."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from vae_core.errors import InputError


class ConfigError(InputError):
    """A configuration file or value is invalid; the message names the key and the value."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
