"""Trial config: presets, dotted overrides and the errors a typo gets."""

import pytest

from audiosweep.config import ConfigError, TrialConfig, list_presets, load_preset, parse_overrides


def test_defaults_are_the_papers_recipe():
    cfg = TrialConfig()
    assert (cfg.optim.base_lr, cfg.optim.weight_decay, cfg.optim.warmup_epochs) == (
        4e-3,
        0.05,
        20.0,
    )
    assert (cfg.train.epochs, cfg.model.drop_path_rate, cfg.augment.mixup_alpha) == (60, 0.4, 0.8)
    assert (cfg.audio.n_mels, cfg.audio.hop_length, cfg.audio.mean, cfg.audio.std) == (
        128,
        320,
        -18.2696,
        30.5735,
    )
    assert (cfg.model.dilated_kernel_size, cfg.model.kernel_count) == (23, 26)


def test_overrides_are_parsed_as_yaml_and_typed():
    cfg = TrialConfig().with_overrides(
        ["optim.lr=1e-3", "model.conv=dcls_gauss", "train.epochs=3", "augment.roll=false"]
    )
    assert cfg.optim.lr == pytest.approx(1e-3) and isinstance(cfg.optim.lr, float)
    assert cfg.model.conv == "dcls_gauss" and cfg.train.epochs == 3 and cfg.augment.roll is False
    assert cfg.case == "convnext_tiny/dcls_gauss"


def test_clip_samples_and_frames_of_the_demo_and_the_paper():
    from audiosweep.train.checks import input_frames

    demo = load_preset("demo").with_overrides(["data.clip_seconds=5.12"])
    assert demo.clip_samples() == 81920  # 5.12 s at 16 kHz
    assert input_frames(demo) == 129  # 81920 // 640 + 1, a centred STFT
    paper = TrialConfig()  # clip length not yet resolved from a manifest: AudioSet's 10 s
    assert paper.data.clip_seconds is None
    assert (paper.clip_samples(), input_frames(paper)) == (320000, 1001)  # 10 s at 32 kHz


def test_unknown_key_names_the_key_and_suggests():
    with pytest.raises(ConfigError, match=r"optim\.lrr.*did you mean 'lr'"):
        TrialConfig().with_overrides(["optim.lrr=1"])
    with pytest.raises(ConfigError, match="unknown config section 'optimizer'"):
        TrialConfig().with_overrides(["optimizer.lr=1"])


def test_a_renamed_key_loads_from_a_saved_config_and_an_override_names_the_new_one():
    saved = TrialConfig().to_dict()
    saved["data"]["task_cpus"] = saved["data"].pop("read_cpus") / 4  # a run saved before
    assert TrialConfig.from_dict(saved).data.read_cpus == 0.25
    with pytest.raises(ConfigError, match="'data.task_cpus' is now 'data.read_cpus'"):
        TrialConfig().with_overrides(["data.task_cpus=0.5"])


def test_wrong_type_is_refused():
    with pytest.raises(ConfigError, match=r"train\.epochs: expected int"):
        TrialConfig().with_overrides(["train.epochs=many"])
    with pytest.raises(ConfigError, match=r"train\.epochs: expected int"):
        TrialConfig().with_overrides(["train.epochs=2.5"])
    with pytest.raises(ConfigError, match="may not be null"):
        TrialConfig().with_overrides(["model.arch=null"])


def test_malformed_override_is_refused():
    with pytest.raises(ConfigError, match="not of the form"):
        parse_overrides(["optim.lr"])


def test_round_trip_through_dict():
    cfg = TrialConfig().with_overrides(["model.options={foo: 1}", "train.seed=2"])
    assert TrialConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.flat()["model.options"] == {"foo": 1}
    assert cfg.flat()["train.seed"] == 2


def test_presets_load_and_apply_overrides():
    assert {"smoke", "demo", "paper"} <= set(list_presets())
    smoke = load_preset("smoke", ["train.seed=5"])
    assert smoke.preset == "smoke" and smoke.train.seed == 5
    paper = load_preset("paper")
    assert paper.train.effective_batch == 4096 and paper.optim.base_lr == 4e-3


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown preset 'smok'.*did you mean 'smoke'"):
        load_preset("smok")


def test_bad_preset_file_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epochz: 3}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*train\.epochz"):
        load_preset(str(bad))


def test_in_process_needs_exactly_one_worker() -> None:
    with pytest.raises(ConfigError, match=r"train\.in_process runs one worker.*num_workers is 2"):
        load_preset("smoke", ["train.in_process=true"])
    cfg = load_preset("smoke", ["train.in_process=true", "train.num_workers=1"])
    assert cfg.train.in_process and cfg.train.num_workers == 1


@pytest.mark.parametrize("value", [0, -2])
def test_seeds_per_config_below_one_is_refused_with_the_fix(value) -> None:
    with pytest.raises(ConfigError, match=r"sweep.seeds_per_config must be an integer >= 1.*e.g."):
        TrialConfig().with_overrides({"sweep.seeds_per_config": value})


def test_seeds_per_config_must_be_an_integer() -> None:
    with pytest.raises(ConfigError, match="seeds_per_config"):
        TrialConfig().with_overrides(["sweep.seeds_per_config=two"])
    assert TrialConfig().with_overrides(["sweep.seeds_per_config=3"]).sweep.seeds_per_config == 3
