"""The training pipeline follows the task: softmax predictions (plain and test-time augmented)
for single-label data, sigmoid for multi-label; SpecAugment's dF as a fraction of the mel bins."""

from __future__ import annotations

import torch

from audiosweep.config import load_preset
from audiosweep.models import create_model_from_config
from audiosweep.train.recipe import build_recipe, freq_mask_width


def _pipe(overrides: list[str]):
    cfg = load_preset("sp4asc_demo", ["data.clip_seconds=2.0", *overrides])
    model = create_model_from_config(cfg, 10).eval()
    pipe = build_recipe(cfg, device=torch.device("cpu"), model=model, train_rows=64, world=1)
    return cfg, model, pipe


def test_single_label_predictions_are_softmax_with_and_without_tta() -> None:
    cfg, model, pipe = _pipe(["augment.tta_views=4"])
    assert pipe.task.name == "singlelabel"
    wave = torch.randn(3, 2 * cfg.audio.sample_rate) * 0.1
    with torch.no_grad():
        plain = pipe.inputs.predict(model, wave)
        both = pipe.inputs.predict(model, wave, tta=True, seed=5)
        again = pipe.inputs.predict(model, wave, tta=True, seed=5)
    assert set(plain) == {""} and set(both) == {"", "_tta"}
    torch.testing.assert_close(both[""], plain[""])
    torch.testing.assert_close(both["_tta"].sum(1), torch.ones(3))
    assert torch.equal(both["_tta"], again["_tta"])
    spec = pipe.inputs.frontend(wave, augment=False)
    with torch.no_grad():
        torch.testing.assert_close(plain[""], torch.softmax(model(spec), 1))


def test_multi_label_predictions_stay_sigmoid() -> None:
    _, model, pipe = _pipe(["data.task=multilabel", "train.loss=bce"])
    wave = torch.randn(2, 32000) * 0.1
    with torch.no_grad():
        probs = pipe.inputs.predict(model, wave)[""]
        logits = model(pipe.inputs.frontend(wave, augment=False))
    torch.testing.assert_close(probs, torch.sigmoid(logits))


def test_frequency_masks_scale_with_the_mel_bins() -> None:
    cfg = load_preset("sp4asc_demo")
    assert freq_mask_width(cfg) == cfg.augment.freq_mask_width == 8
    assert freq_mask_width(cfg.with_overrides({"augment.freq_mask_fraction": 0.125})) == 8
    full = cfg.with_overrides({"audio.n_mels": 256, "augment.freq_mask_fraction": 0.0625})
    assert freq_mask_width(full) == 16  # the report's dF for its MixUp system
