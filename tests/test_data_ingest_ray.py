"""Ingest on a Ray cluster: the same rows and rejections as the local ingest, resumable after
an interruption without rewriting finished shards, and `jobs/prepare_data.py` through
`ray job submit`. Real Ray head, real audio files, real Parquet."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from audiosweep.data import DatasetInfo, LabelIndex, default_labels_path, verify
from audiosweep.data.ingest import SplitInput, ingest
from audiosweep.data.ingest_audioset import (
    count_segments,
    index_audio_dir,
    prepare_audioset,
    segment_sources,
)
from audiosweep.data.writer import STATE_DIR
from conftest import submit_job

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
SR = 16000
SPEECH, MUSIC, DOG = "/m/09x0r", "/m/04rlf", "/m/0bt9lr"
SHARD_CLIPS = 3


def _tone(freq: float, sr: int, seconds: float, channels: int = 1) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    wave = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([wave, 0.5 * wave], axis=1) if channels == 2 else wave


@pytest.fixture(scope="module")
def audioset_input(tmp_path_factory) -> Path:
    """17 segments: 11 good clips of several rates/channels/containers, one of every reason."""
    root = tmp_path_factory.mktemp("ray_ingest_input")
    audio = root / "audio"
    audio.mkdir()
    lines = []
    rates = [8000, 16000, 22050, 44100, 48000]
    labels = [SPEECH, MUSIC, DOG, f"{SPEECH},{DOG}"]
    for i in range(11):
        sr = rates[i % len(rates)]
        ext = ".wav" if i % 3 else ".flac"
        sf.write(audio / f"clip{i:02d}{ext}", _tone(200 + 50 * i, sr, 0.6, 1 + i % 2), sr)
        lines.append(f'clip{i:02d}, 0.000, 10.000, "{labels[i % len(labels)]}"')
        if i == 4:
            (audio / "garbage.wav").write_bytes(np.random.default_rng(1).bytes(3000))
            lines.append(f'garbage, 0.0, 10.0, "{SPEECH}"')
            lines.append(f'clip01, 0.0, 10.0, "{MUSIC}"')  # duplicate id
        if i == 7:
            (audio / "empty.flac").write_bytes(b"")
            lines.append(f'empty, 0.0, 10.0, "{MUSIC}"')
            lines.append(f'nowhere, 0.0, 10.0, "{MUSIC}"')
            sf.write(audio / "oddlabel.wav", _tone(300, SR, 0.3), SR)
            lines.append('oddlabel, 0.0, 10.0, "/m/notaclass"')
            lines.append('clip99, 0.0, 10.0, ""')
    (root / "train.csv").write_text(
        "# YTID, start_seconds, end_seconds, positive_labels\n" + "\n".join(lines) + "\n"
    )
    return root


def _rows(ds: Path, split: str = "train") -> list[tuple[str, list[int], int, np.ndarray]]:
    """Every row in manifest order: clip id, labels, sample rate, decoded audio."""
    out = []
    for path in DatasetInfo.load(ds).shard_paths(split):
        for row in pq.read_table(path).to_pylist():
            wave, rate = sf.read(io.BytesIO(row["audio"]), dtype="float32")
            assert wave.shape[0] == row["num_frames"] and rate == row["sample_rate"]
            out.append((row["clip_id"], row["labels"], rate, wave))
    return out


def _entry(ds: Path, split: str = "train") -> dict:
    return json.loads((ds / "manifest.json").read_text())["splits"][split]


def _labels() -> LabelIndex:
    return LabelIndex.read(default_labels_path())


def _prepare(out: Path, inp: Path, **kwargs) -> dict:
    return prepare_audioset(
        out,
        audio_dir=inp / "audio",
        segments=inp / "train.csv",
        labels=_labels(),
        sample_rate=SR,
        progress=False,
        **kwargs,
    )


def test_ray_ingest_equals_local_ingest(ray_client, ray_address, audioset_input, tmp_path):
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    _prepare(local, audioset_input, workers=1)
    _prepare(on_ray, audioset_input, address=ray_address, shard_clips=SHARD_CLIPS)

    assert verify(local).ok and verify(on_ray).ok, verify(on_ray).problems
    a, b = _rows(local), _rows(on_ray)
    assert [r[:3] for r in a] == [r[:3] for r in b] and len(a) == 11
    for (clip_id, _, _, wave_a), (_, _, _, wave_b) in zip(a, b, strict=True):
        np.testing.assert_array_equal(wave_a, wave_b, err_msg=clip_id)
    ea, eb = _entry(local), _entry(on_ray)
    for key in ("rows", "positives_per_class", "rejected", "rejected_counts"):
        assert ea[key] == eb[key], key
    assert eb["audio_seconds"] == pytest.approx(ea["audio_seconds"], abs=0.01)
    assert eb["rejected_counts"] == {
        "corrupt": 1,
        "duplicate": 1,
        "empty": 1,
        "missing": 1,
        "no_labels": 1,
        "unknown_label": 1,
    }
    # One shard per chunk of SHARD_CLIPS input clips (17 -> 6 chunks, each with a good clip).
    assert [s["file"] for s in eb["shards"]] == [f"train/part-{i:05d}.parquet" for i in range(6)]
    assert not (on_ray / STATE_DIR).exists()
    assert sorted(p.name for p in (on_ray / "train").iterdir()) == [
        f"part-{i:05d}.parquet" for i in range(6)
    ]


def test_interrupted_ray_ingest_resumes_without_redoing_shards(
    ray_client, ray_address, audioset_input, tmp_path
):
    files = index_audio_dir(audioset_input / "audio")
    csv = audioset_input / "train.csv"
    out = tmp_path / "ds"
    stop_after = 2 * SHARD_CLIPS + 1  # chunks 0 and 1 are sent, then the driver dies

    def interrupted():
        for n, src in enumerate(segment_sources(csv, files)):
            if n == stop_after:
                raise KeyboardInterrupt
            yield src

    kwargs = dict(labels=_labels(), sample_rate=SR, progress=False, address=ray_address)
    with pytest.raises(KeyboardInterrupt):
        ingest(out, {"train": SplitInput(interrupted())}, shard_clips=SHARD_CLIPS, **kwargs)
    assert not (out / "manifest.json").exists()
    # The tasks already sent finish on the cluster after the driver is gone.
    records = [out / STATE_DIR / "train" / f"part-{i:05d}.json" for i in (0, 1)]
    deadline = time.monotonic() + 120
    while not all(r.is_file() for r in records):
        assert time.monotonic() < deadline, "the sent chunks never finished"
        time.sleep(0.5)
    finished = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (out / "train").iterdir()}
    assert sorted(p.name for p in finished) == ["part-00000.parquet", "part-00001.parquet"]
    # What a crash leaves mid-write: a temporary file, and a renamed shard without its record.
    (out / "train" / ".part-00002.parquet.tmp").write_bytes(b"PAR1 half")
    stray = out / "train" / "part-00003.parquet"
    stray.write_bytes(b"not a finished shard")

    source = {"kind": "audioset", "segments": {"train": csv.name}}
    ingest(
        out,
        {"train": SplitInput(segment_sources(csv, files), total=count_segments(csv))},
        shard_clips=SHARD_CLIPS,
        source=source,
        **kwargs,
    )
    for path, (ino, mtime) in finished.items():
        assert (path.stat().st_ino, path.stat().st_mtime_ns) == (ino, mtime), path.name
    assert stray.read_bytes() != b"not a finished shard"
    assert not (out / "train" / ".part-00002.parquet.tmp").exists()

    clean = tmp_path / "clean"
    _prepare(clean, audioset_input, address=ray_address, shard_clips=SHARD_CLIPS)
    assert verify(out).ok, verify(out).problems
    assert _entry(out) == _entry(clean)  # same shards, byte for byte (sha256), same rejections
    assert [r[:3] for r in _rows(out)] == [r[:3] for r in _rows(clean)]


HF_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("audio", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        ("labels", pa.list_(pa.string())),
    ]
)


def test_prepare_hf_through_ray_job_submit(ray_head, tmp_path):
    def flac(freq: float, sr: int) -> bytes:
        buf = io.BytesIO()
        sf.write(buf, _tone(freq, sr, 0.5), sr, format="FLAC")
        return buf.getvalue()

    rows = [
        {
            "video_id": f"v{i}",
            "audio": {"bytes": flac(300 + 40 * i, 22050), "path": None},
            "labels": [MUSIC],
        }
        for i in range(5)
    ]
    rows.append(
        {"video_id": "bad", "audio": {"bytes": b"nope" * 50, "path": None}, "labels": [DOG]}
    )
    pq.write_table(pa.Table.from_pylist(rows, schema=HF_SCHEMA), tmp_path / "hf.parquet")
    out = tmp_path / "ds"
    proc = submit_job(
        ray_head["dashboard"],
        [
            "jobs/prepare_data.py",
            "hf",
            "--parquet",
            str(tmp_path / "hf.parquet"),
            "--split",
            "train",
            "--out",
            str(out),
            "--sample-rate",
            str(SR),
            "--address",
            "auto",
            "--shard-clips",
            "2",
            "--no-progress",
        ],
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "train: 5 clips written, 1 rejected (corrupt 1)" in proc.stdout
    assert verify(out).ok
    entry = _entry(out)
    assert entry["rows"] == 5 and len(entry["shards"]) == 3
    assert [r[0] for r in _rows(out)] == [f"v{i}" for i in range(5)]


def test_hdf5_and_wds_ray_ingest_equals_local(ray_client, ray_address, tmp_path):
    """PANNs int16 + PaSST MP3 files and a webdataset shard: the same rows, rejections and
    fingerprint on Ray (one shard per 2 clips) as on this machine."""
    from audiosweep.data.ingest_hdf5 import prepare_hdf5
    from audiosweep.data.ingest_wds import prepare_wds
    from test_data_ingest_hdf5 import _mp3, write_panns, write_passt
    from test_data_ingest_hdf5 import _tone as tone_1s
    from test_data_ingest_wds import _write_tar

    panns = [(f"Yclip{i:02d}-abcd.wav", tone_1s(200 + 90 * i), [i, 40]) for i in range(4)]
    panns.append(("", np.zeros(SR, np.float32), []))
    write_panns(tmp_path / "panns.h5", panns, np.int16)
    passt = [(f"Yclip{i:02d}-abcd.mp3", _mp3(tone_1s(100 * i)), [i]) for i in range(3, 6)]
    write_passt(tmp_path / "passt.hdf", passt)
    _write_tar(
        tmp_path / "s.tar",
        [(f"clip{i:02d}-wxyz", {"flac": _tone_flac(300 + 20 * i), "cls": b"7"}) for i in range(3)],
    )
    for name, prepare, splits in (
        ("hdf5", prepare_hdf5, {"train": [str(tmp_path / "panns.h5"), str(tmp_path / "*.hdf")]}),
        ("wds", prepare_wds, {"train": [str(tmp_path / "s.tar")]}),
    ):
        local, on_ray = tmp_path / f"{name}-local", tmp_path / f"{name}-ray"
        common = dict(splits=splits, labels=_labels(), sample_rate=SR, progress=False)
        prepare(local, **common)
        prepare(on_ray, **common, address=ray_address, shard_clips=2)
        a, b = _rows(local), _rows(on_ray)
        assert [r[:3] for r in a] == [r[:3] for r in b] and a, name
        for (clip_id, _, _, wave_a), (_, _, _, wave_b) in zip(a, b, strict=True):
            np.testing.assert_array_equal(wave_a, wave_b, err_msg=clip_id)
        assert _entry(local)["rejected"] == _entry(on_ray)["rejected"], name
        assert len(_entry(on_ray)["shards"]) > len(_entry(local)["shards"]), name
        assert DatasetInfo.load(local).fingerprint == DatasetInfo.load(on_ray).fingerprint, name


def _tone_flac(freq: float) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, _tone(freq, SR, 0.5), SR, format="FLAC")
    return buf.getvalue()
