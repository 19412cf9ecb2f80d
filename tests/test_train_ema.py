"""The weight EMA against its closed form: after updates with weights w_1..w_n from w_0,
ema_n = d^n w_0 + (1 - d) * sum_t d^(n - t) w_t (integer buffers copied)."""

from __future__ import annotations

import pytest
import torch
from timm.utils import ModelEmaV3
from torch import nn

from audiosweep.config import ConfigError, TrialConfig
from audiosweep.train.ema import create_ema


class Tiny(nn.Module):
    """A linear layer, a batch norm (float and integer buffers) and one tensor held by two
    modules, as DCLS layers of a stage share their positions."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.bn = nn.BatchNorm1d(2)
        shared = nn.Parameter(torch.zeros(4))
        self.a, self.b = nn.Module(), nn.Module()
        self.a.p = shared
        self.b.p = shared


def _closed_form(history: list[dict[str, torch.Tensor]], decay: float) -> dict[str, torch.Tensor]:
    n = len(history) - 1
    out = {}
    for key, first in history[0].items():
        if not first.is_floating_point():
            out[key] = history[-1][key]
            continue
        value = decay**n * first.double()
        for t in range(1, n + 1):
            value = value + (1 - decay) * decay ** (n - t) * history[t][key].double()
        out[key] = value
    return out


def _train(model: nn.Module, ema, steps: int) -> list[dict[str, torch.Tensor]]:
    history = [{k: v.detach().clone() for k, v in model.state_dict().items()}]
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        with torch.no_grad():
            for p in {id(p): p for p in model.parameters()}.values():
                p.add_(torch.randn(p.shape, generator=gen))
        model.train()
        model.bn(torch.randn(5, 2, generator=gen))  # moves running stats and the batch count
        ema.update(model)
        history.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    return history


def test_ema_update_equals_the_closed_form():
    torch.manual_seed(0)
    model, decay = Tiny(), 0.8
    ema = create_ema(model, decay)
    history = _train(model, ema, steps=6)
    expected = _closed_form(history, decay)
    got = ema.module.state_dict()
    for key, value in expected.items():
        if value.is_floating_point():
            torch.testing.assert_close(got[key].double(), value, rtol=1e-6, atol=1e-6, msg=key)
        else:
            assert torch.equal(got[key], value), key
    assert int(got["bn.num_batches_tracked"]) == 6
    assert got["a.p"].data_ptr() == got["b.p"].data_ptr()  # still one tensor


def test_a_shared_tensor_moves_once_per_step_unlike_timms_plain_update():
    torch.manual_seed(0)
    model, decay = Tiny(), 0.8
    plain = ModelEmaV3(model, decay=decay)
    history = _train(model, plain, steps=3)
    expected = _closed_form(history, decay)["a.p"]
    # timm walks the state dict, which lists the shared tensor twice: it decays twice per step.
    assert not torch.allclose(plain.module.state_dict()["a.p"].double(), expected, atol=1e-3)


def test_ema_restores_from_a_state_dict_and_is_off_by_default():
    model = Tiny()
    assert create_ema(model, TrialConfig().train.ema_decay) is None
    saved = {k: v + 1 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    ema = create_ema(model, 0.9, saved)
    for key, value in ema.module.state_dict().items():
        assert torch.equal(value, saved[key]), key


@pytest.mark.parametrize("bad", [0.0, 1.0, 1.5, -0.1])
def test_ema_decay_outside_the_open_unit_interval_is_refused(bad):
    with pytest.raises(ConfigError, match="train.ema_decay"):
        TrialConfig().with_overrides({"train.ema_decay": bad})
