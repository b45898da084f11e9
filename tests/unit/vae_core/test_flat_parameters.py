"""One flat buffer for training: same values, same gradients, same updates as torch's own."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from vae_core.flat_parameters import FlatAdamW, flat_parameters


def small_net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.SiLU(), nn.Linear(7, 3))


def data(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(64, 5, generator=generator), torch.randn(64, 3, generator=generator)


def loss_of(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((model(x) - y) ** 2).sum(dim=1).mean()


def test_parameters_live_in_the_buffer_inside_and_get_their_own_storage_back_after(
    tmp_path: Path,
) -> None:
    model = small_net()
    before = copy.deepcopy(model.state_dict())
    with flat_parameters(model) as flat:
        assert flat.parameter.numel() == sum(p.numel() for p in model.parameters())
        pointers = {p.untyped_storage().data_ptr() for p in model.parameters()}
        assert pointers == {flat.parameter.untyped_storage().data_ptr()}
        with torch.no_grad():
            flat.parameter.add_(1.0)  # an update of the buffer is an update of the model
        for name, value in model.state_dict().items():
            assert torch.equal(value, before[name] + 1.0)
    pointers = {p.untyped_storage().data_ptr() for p in model.parameters()}
    assert len(pointers) == len(list(model.parameters()))
    assert all(p.grad is None for p in model.parameters())
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name] + 1.0)
    # safetensors refuses tensors that share storage, so a successful save shows that the
    # parameters were given back their own memory.
    save_file(model.state_dict(), str(tmp_path / "restored.safetensors"))


def test_gradients_accumulate_into_the_flat_gradient_and_clip_like_torch():
    x, y = data()
    reference, model = small_net(), small_net()
    loss_of(reference, x, y).backward()
    expected_norm = nn.utils.clip_grad_norm_(reference.parameters(), 0.5)
    with flat_parameters(model) as flat:
        flat.zero_grad()
        loss_of(model, x, y).backward()
        norm = flat.clip_grad_norm(0.5)
        assert norm.item() == pytest.approx(expected_norm.item(), rel=1e-6)
        assert expected_norm.item() > 0.5  # the clip did scale
        for p, q in zip(model.parameters(), reference.parameters(), strict=True):
            assert torch.allclose(p.grad, q.grad, rtol=1e-6, atol=1e-7)
        stacked = torch.cat([q.grad.reshape(-1) for q in reference.parameters()])
        assert torch.allclose(flat.grad, stacked, rtol=1e-6, atol=1e-7)


def test_flat_adamw_follows_torch_adamw_step_for_step():
    x, y = data()
    reference, model = small_net(), small_net()
    optimizer = torch.optim.AdamW(reference.parameters(), lr=3e-2, weight_decay=1e-2, foreach=False)
    with flat_parameters(model) as flat:
        flat_optimizer = FlatAdamW(flat, lr=3e-2, weight_decay=1e-2)
        for _ in range(25):
            optimizer.zero_grad()
            loss_of(reference, x, y).backward()
            nn.utils.clip_grad_norm_(reference.parameters(), 1.0)
            optimizer.step()
            flat.zero_grad()
            loss_of(model, x, y).backward()
            flat.clip_grad_norm(1.0)
            flat_optimizer.step()
    moved = 0.0
    for p, q, start in zip(
        model.parameters(), reference.parameters(), small_net().parameters(), strict=True
    ):
        assert torch.allclose(p, q, rtol=1e-5, atol=1e-6)
        moved += (p - start).abs().sum().item()
    assert moved > 1.0  # the comparison is of trained weights, not of the start


def test_mixed_dtypes_and_empty_modules_are_refused():
    mixed = small_net()
    mixed[2].double()
    with pytest.raises(ValueError, match="one dtype and device"):
        with flat_parameters(mixed):
            pass
    with pytest.raises(ValueError, match="no trainable parameters"):
        with flat_parameters(nn.SiLU()):
            pass
