"""Every case of every shipped search space, under every preset, builds as the training loop
builds it and runs a forward pass: no shipped space has a case that cannot train."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from audiosweep.config import TrialConfig, load_preset
from audiosweep.models import create_model_from_config
from audiosweep.models.from_config import model_kwargs
from audiosweep.sweep.spaces import load_space
from audiosweep.train.checks import check_trial

SEARCH_SPACES = Path(__file__).resolve().parents[1] / "search_spaces"
PRESETS = sorted((SEARCH_SPACES / "presets").glob("*.yaml"))
SPACES = sorted(SEARCH_SPACES.glob("*.yaml"))
# The fewest frames every backbone takes: the (2, 16) stem, then three 2x downsamplings.
FRAMES = 128
NUM_CLASSES = 4
_built: set[str] = set()  # one build per distinct model across the parametrized cases


def _cases(preset: Path, space: Path) -> list[TrialConfig]:
    """One config per case, plus one per grid variant (axes crossed, seeds aside)."""
    base = load_preset(str(preset))
    spec = load_space(str(space))
    arch_map = dict(base.sweep.arch_map)
    configs = [base.with_overrides(spec.case_overrides(case, arch_map)) for case in spec.cases]
    if spec.kind == "grid":
        seed = spec.seeds[0]
        configs += [base.with_overrides(v.overrides) for v in spec.variants(base) if v.seed == seed]
    return configs


def test_every_preset_and_space_is_covered() -> None:
    names = {p.stem for p in PRESETS}, {p.stem for p in SPACES}
    assert {"demo", "paper", "smoke", "sp4asc", "sp4asc_demo"} <= names[0]
    assert {"grid", "ablation_interp", "ablation_sp4asc"} <= names[1]


@pytest.mark.parametrize("space", SPACES, ids=lambda p: p.stem)
@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_every_case_builds_and_runs_as_the_training_loop_builds_it(
    preset: Path, space: Path
) -> None:
    for cfg in _cases(preset, space):
        check_trial(cfg)  # what the driver checks before any worker starts
        key = repr((cfg.model.arch, sorted(model_kwargs(cfg).items()), cfg.audio.n_mels))
        if key in _built:
            continue
        model = create_model_from_config(cfg, NUM_CLASSES).eval()
        with torch.no_grad():
            logits = model(torch.randn(1, 1, cfg.audio.n_mels, FRAMES))
        assert logits.shape == (1, NUM_CLASSES), cfg.case
        assert torch.isfinite(logits).all(), cfg.case
        _built.add(key)


def test_sp4asc_takes_no_drop_path_and_the_front_end_mel_bins() -> None:
    cfg = load_preset(str(SEARCH_SPACES / "presets" / "demo.yaml"), ["model.arch=sp4asc"])
    assert cfg.model.drop_path_rate > 0 and cfg.audio.n_mels == 32
    model = create_model_from_config(cfg, NUM_CLASSES)
    assert model.n_mels == 32
    conflicting = cfg.with_overrides({"model.options": {"n_mels": 256}})
    with pytest.raises(ValueError, match="drop model.options.n_mels") as error:
        check_trial(conflicting)
    assert "\n" not in str(error.value)
