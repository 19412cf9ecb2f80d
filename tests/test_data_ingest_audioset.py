"""`prepare audioset`: real malformed files, every rejection reason, resampling, overwrite."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from audiosweep.cli import main
from audiosweep.data import DatasetError, DatasetInfo, LabelIndex, default_labels_path, verify
from audiosweep.data.ingest_audioset import prepare_audioset

SR = 16000
SPEECH, MUSIC, DOG = "/m/09x0r", "/m/04rlf", "/m/0bt9lr"

HEADER = (
    "# Segments csv created Sun Mar  5 10:54:31 2017\n"
    "# num_ytids=9, num_segs=9, num_unique_labels=3, num_positive_labels=9\n"
    "# YTID, start_seconds, end_seconds, positive_labels\n"
)


def _sine(freq: float, sr: int, seconds: float, amp: float) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(sr * seconds)) / sr)).astype(np.float32)


@pytest.fixture
def audioset_dir(tmp_path):
    audio = tmp_path / "audio"
    (audio / "sub").mkdir(parents=True)
    stereo = np.stack([_sine(440, 44100, 1.0, 0.5), _sine(440, 44100, 1.0, 0.25)], axis=1)
    sf.write(audio / "stereo44k.wav", stereo, 44100, subtype="PCM_16")
    sf.write(audio / "sub" / "mono8k_30.000.flac", _sine(300, 8000, 1.0, 0.5), 8000)
    sf.write(
        audio / "vorbis22k.ogg", _sine(500, 22050, 0.5, 0.3), 22050, format="OGG", subtype="VORBIS"
    )
    (audio / "randombytes.wav").write_bytes(np.random.default_rng(0).bytes(4096))
    (audio / "emptyfile.flac").write_bytes(b"")
    sf.write(audio / "strangemid.wav", _sine(200, SR, 0.5, 0.2), SR)
    sf.write(audio / "nolabels.wav", _sine(200, SR, 0.5, 0.2), SR)
    sf.write(audio / "evalclip.flac", _sine(1000, 48000, 1.5, 0.2), 48000)
    train = tmp_path / "train.csv"
    train.write_text(
        HEADER
        + f'stereo44k, 0.000, 10.000, "{SPEECH},{MUSIC}"\n'
        + f'mono8k, 30.000, 40.000, "{DOG}"\n'
        + f'vorbis22k, 0.000, 10.000, "{MUSIC}"\n'
        + f'randombytes, 0.000, 10.000, "{SPEECH}"\n'
        + f'emptyfile, 0.000, 10.000, "{SPEECH}"\n'
        + f'notdownloaded, 0.000, 10.000, "{SPEECH}"\n'
        + f'strangemid, 0.000, 10.000, "{SPEECH},/m/notaclass"\n'
        + f'mono8k, 30.000, 40.000, "{DOG}"\n'
        + 'nolabels, 0.000, 10.000, ""\n'
    )
    evals = tmp_path / "eval.csv"
    evals.write_text(
        HEADER + f'evalclip, 0.0, 10.0, "{DOG}"\n' + f'stereo44k, 0.0, 10.0, "{SPEECH}"\n'
    )
    return tmp_path


def _decoded(ds, split: str) -> dict[str, tuple[np.ndarray, int, list[int], int]]:
    info = DatasetInfo.load(ds)
    out = {}
    for path in info.shard_paths(split):
        for row in pq.read_table(path).to_pylist():
            wave, rate = sf.read(io.BytesIO(row["audio"]), dtype="float32")
            out[row["clip_id"]] = (wave, rate, row["labels"], row["num_frames"])
    return out


def test_every_rejection_reason_and_good_rows_kept(audioset_dir):
    out = audioset_dir / "ds"
    entries = prepare_audioset(
        out,
        audio_dir=audioset_dir / "audio",
        segments=audioset_dir / "train.csv",
        eval_segments=audioset_dir / "eval.csv",
        labels=LabelIndex.read(default_labels_path()),
        sample_rate=SR,
        progress=False,
    )
    reasons = {(r["clip_id"], r["reason"]) for r in entries["train"]["rejected"]}
    assert reasons == {
        ("randombytes", "corrupt"),
        ("emptyfile", "empty"),
        ("notdownloaded", "missing"),
        ("strangemid", "unknown_label"),
        ("mono8k", "duplicate"),
        ("nolabels", "no_labels"),
    }
    assert [(r["clip_id"], r["reason"]) for r in entries["eval"]["rejected"]] == [
        ("stereo44k", "duplicate")
    ]
    assert "/m/notaclass" in next(
        r["detail"] for r in entries["train"]["rejected"] if r["reason"] == "unknown_label"
    )

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["splits"]["train"]["rows"] == 3
    assert manifest["splits"]["train"]["rejected_counts"] == {
        "corrupt": 1,
        "missing": 1,
        "empty": 1,
        "unknown_label": 1,
        "duplicate": 1,
        "no_labels": 1,
    }
    assert manifest["splits"]["eval"]["rows"] == 1

    mids = [line.split(",")[1] for line in default_labels_path().read_text().splitlines()[1:]]
    train = _decoded(out, "train")
    assert set(train) == {"stereo44k", "mono8k", "vorbis22k"}
    assert train["stereo44k"][2] == sorted([mids.index(SPEECH), mids.index(MUSIC)])
    assert train["mono8k"][2] == [mids.index(DOG)]
    for wave, rate, _, frames in train.values():
        assert rate == SR and wave.ndim == 1 and len(wave) == frames
    assert verify(out, progress=False).ok


def test_resampling_44k_stereo_and_8k_mono(audioset_dir):
    out = audioset_dir / "ds"
    prepare_audioset(
        out,
        audio_dir=audioset_dir / "audio",
        segments=audioset_dir / "train.csv",
        labels=LabelIndex.read(default_labels_path()),
        sample_rate=SR,
        progress=False,
    )
    clips = _decoded(out, "train")
    t = np.arange(SR) / SR
    # Stereo 0.5 and 0.25 amplitude sines average to a 0.375 amplitude mono sine.
    wave, _, _, frames = clips["stereo44k"]
    assert frames == SR
    edge = 200  # the resampling filter's start-up at the clip edges
    np.testing.assert_allclose(
        wave[edge:-edge], 0.375 * np.sin(2 * np.pi * 440 * t)[edge:-edge], atol=3e-3
    )
    wave, _, _, frames = clips["mono8k"]
    assert frames == SR
    np.testing.assert_allclose(
        wave[edge:-edge], 0.5 * np.sin(2 * np.pi * 300 * t)[edge:-edge], atol=3e-3
    )


def test_cli_refuses_to_overwrite_then_overwrites(audioset_dir, capsys):
    out = audioset_dir / "ds"
    args = [
        "prepare", "audioset", "--audio-dir", str(audioset_dir / "audio"),
        "--segments", str(audioset_dir / "train.csv"), "--out", str(out),
        "--sample-rate", str(SR), "--no-progress",
    ]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "train: 3 clips written, 6 rejected" in printed
    assert "corrupt 1" in printed and "no_labels 1" in printed
    before = (out / "manifest.json").read_bytes()

    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "manifest.json").read_bytes() == before

    assert main([*args, "--overwrite"]) == 0
    assert DatasetInfo.load(out).rows("train") == 3


def test_refuses_a_folder_that_is_not_a_dataset(audioset_dir):
    out = audioset_dir / "notes"
    out.mkdir()
    (out / "thesis.tex").write_text("keep me")
    with pytest.raises(DatasetError, match="not an audiosweep dataset"):
        prepare_audioset(
            out,
            audio_dir=audioset_dir / "audio",
            segments=audioset_dir / "train.csv",
            labels=LabelIndex.read(default_labels_path()),
            progress=False,
        )
    assert (out / "thesis.tex").read_text() == "keep me"


def test_parallel_ingest_writes_identical_shards(audioset_dir):
    labels = LabelIndex.read(default_labels_path())
    kwargs = dict(
        audio_dir=audioset_dir / "audio",
        segments=audioset_dir / "train.csv",
        labels=labels,
        sample_rate=SR,
        progress=False,
    )
    serial = prepare_audioset(audioset_dir / "serial", workers=1, **kwargs)
    parallel = prepare_audioset(audioset_dir / "parallel", workers=2, **kwargs)
    assert parallel == serial
    assert (audioset_dir / "parallel" / "manifest.json").read_bytes() == (
        audioset_dir / "serial" / "manifest.json"
    ).read_bytes()
