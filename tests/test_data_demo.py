"""The embedded demo dataset: deterministic, per-clip regenerable, multi-label, documented."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import soundfile as sf

import audiosweep.data.demo as demo
from audiosweep.data import DatasetInfo, format_summary, generate_clip, prepare_demo, summarize

TINY = dict(clip_seconds=1.0, sample_rate=16000)


def test_dataset_is_deterministic_and_each_clip_regenerable(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    prepare_demo(a, train_clips=10, eval_clips=4, seed=7, progress=False, **TINY)
    prepare_demo(b, train_clips=10, eval_clips=4, seed=7, progress=False, **TINY)
    for name in (
        "manifest.json",
        "labels.csv",
        "train/part-00000.parquet",
        "eval/part-00000.parquet",
    ):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name

    info = DatasetInfo.load(a)
    assert info.num_classes == len(demo.CLASSES) and info.mids[0].startswith("/demo/")
    table = pq.read_table(info.shard_paths("eval")[0])
    row = table.slice(3, 1).to_pylist()[0]
    clip = generate_clip("eval", 3, seed=7, **TINY)
    assert row["clip_id"] == clip.clip_id == "demo-eval-000003"
    assert row["labels"] == list(clip.labels)
    stored, rate = sf.read(io.BytesIO(row["audio"]), dtype="float32")
    assert rate == 16000 and len(stored) == 16000
    np.testing.assert_allclose(stored, clip.wave, atol=1.0 / 32768 + 1e-6)

    other = generate_clip("eval", 3, seed=8, **TINY)
    assert not np.allclose(other.wave, clip.wave)


def test_wav_demo_holds_the_same_clips_as_flac(tmp_path):
    """`--format wav` changes the container: both hold the clip as 16-bit PCM (libsndfile
    rounds to 16 bits a little differently per container: at most one step apart)."""
    flac, wav = tmp_path / "flac", tmp_path / "wav"
    prepare_demo(flac, train_clips=6, eval_clips=2, seed=3, progress=False, **TINY)
    prepare_demo(
        wav, train_clips=6, eval_clips=2, seed=3, progress=False, audio_format="wav", **TINY
    )
    for split in ("train", "eval"):
        a = pq.read_table(DatasetInfo.load(flac).shard_paths(split)[0]).to_pylist()
        b = pq.read_table(DatasetInfo.load(wav).shard_paths(split)[0]).to_pylist()
        assert [r["clip_id"] for r in a] == [r["clip_id"] for r in b]
        assert [r["labels"] for r in a] == [r["labels"] for r in b]
        for x, y in zip(a, b, strict=True):
            assert sf.info(io.BytesIO(x["audio"])).format == "FLAC"
            assert sf.info(io.BytesIO(y["audio"])).format == "WAV"
            wave_x, _ = sf.read(io.BytesIO(x["audio"]), dtype="int16")
            wave_y, _ = sf.read(io.BytesIO(y["audio"]), dtype="int16")
            assert wave_x.shape == wave_y.shape
            assert np.abs(wave_x.astype(np.int32) - wave_y).max() <= 1


def test_clips_are_multi_label_and_well_formed():
    counts = np.zeros(len(demo.CLASSES), dtype=int)
    sizes = []
    for i in range(120):
        clip = generate_clip("train", i, **TINY)
        assert clip.wave.dtype == np.float32 and clip.wave.shape == (16000,)
        assert np.isfinite(clip.wave).all() and 0.29 <= np.abs(clip.wave).max() <= 0.91
        assert 1 <= len(clip.labels) <= 3 and len(set(clip.labels)) == len(clip.labels)
        assert not {demo.BEEPS_REGULAR, demo.BEEPS_IRREGULAR} <= set(clip.labels)
        counts[list(clip.labels)] += 1
        sizes.append(len(clip.labels))
    assert counts.min() >= 8, counts  # every class occurs
    assert {1, 2, 3} <= set(sizes)


def test_beep_rhythms_differ_only_in_timing():
    clip = 10.0
    for i in range(50):
        regular = demo._beep_onsets(True, clip, np.random.default_rng(i))
        irregular = demo._beep_onsets(False, clip, np.random.default_rng(1000 + i))
        gaps = np.diff(regular)
        assert gaps.min() > 1.4 and np.ptp(gaps) < 0.05 * gaps.mean()
        span = irregular[-1] - irregular[0]
        period = span / (len(irregular) - 1)
        assert 4 <= len(regular) <= 6 and 4 <= len(irregular) <= 6
        assert np.abs(np.diff(irregular) - period).max() >= 0.25 * period
        assert irregular[0] >= 0.0 and irregular[-1] <= clip


def test_class_table_documents_every_class():
    table = (Path(demo.__file__).parent / "DEMO_CLASSES.md").read_text()
    documented = re.findall(r"`(/demo/[a-z_]+)`", table)
    assert documented == [mid for mid, _ in demo.CLASSES]
    for mid, _ in demo.CLASSES:
        assert mid.removeprefix("/demo/") in demo.__doc__


def test_summary_reports_rows_positives_and_bytes(tmp_path):
    out = tmp_path / "ds"
    prepare_demo(out, train_clips=12, eval_clips=5, progress=False, **TINY)
    summary = summarize(out)
    for split, rows in (("train", 12), ("eval", 5)):
        s = summary["splits"][split]
        table = pq.read_table(out / split / "part-00000.parquet")
        expected = np.zeros(len(demo.CLASSES), int)
        for labels in table.column("labels").to_pylist():
            expected[labels] += 1
        assert s["rows"] == rows == table.num_rows
        assert s["positives_per_class"] == expected.tolist()
        assert s["bytes"] == sum(p.stat().st_size for p in (out / split).glob("*.parquet"))
    text = format_summary(summary)
    assert "train: 12 clips" in text and "eval: 5 clips" in text
    assert all(name in text for _, name in demo.CLASSES)

    totals = np.add(
        summary["splits"]["train"]["positives_per_class"],
        summary["splits"]["eval"]["positives_per_class"],
    )
    top = format_summary(summary, max_classes=3)
    assert "3 most frequent of 10" in top
    shown = [name for _, name in demo.CLASSES if f"    {name} " in top]
    assert (
        sorted(totals[[n for _, n in demo.CLASSES].index(name)] for name in shown)
        == sorted(totals)[-3:]
    )
