"""`prepare hdf5`: files written here with h5py the way the PANNs and PaSST/EfficientAT packing
scripts write them ingest with every good row kept, labels and audio equal to the source, and
every bad row rejected with its reason; coverage against an official segments CSV."""

from __future__ import annotations

import io
import json
from pathlib import Path

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from audiosweep.cli import main
from audiosweep.data import DatasetError, DatasetInfo, LabelIndex, default_labels_path, verify
from audiosweep.data.ingest_hdf5 import prepare_hdf5

SR = 16000
SAMPLES = SR  # 1 s clips keep the files small
LABELS = LabelIndex.read(default_labels_path())
CLASSES = len(LABELS)


def _tone(freq: float, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(SAMPLES) / SR
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _ytid(i: int) -> str:
    return f"clip{i:03d}-abc"  # 11 characters, like a YouTube id


def write_panns(path: Path, rows: list[tuple[str, np.ndarray, list[int]]], dtype) -> None:
    """As `pack_waveforms_to_hdf5` does: S20 names ``Y<id>.wav`` (empty for a clip it could not
    find), a (N, samples) waveform (float32, or int16 of x * 32767), a (N, 527) bool target
    and the sample rate as an int32 attribute."""
    with h5py.File(path, "w") as hf:
        hf.create_dataset("audio_name", shape=(len(rows),), dtype="S20")
        hf.create_dataset("waveform", shape=(len(rows), SAMPLES), dtype=dtype)
        hf.create_dataset("target", shape=(len(rows), CLASSES), dtype=bool)
        hf.attrs.create("sample_rate", data=SR, dtype=np.int32)
        for n, (name, wave, classes) in enumerate(rows):
            if not name:
                continue  # the script leaves the row zero
            hf["audio_name"][n] = name.encode()
            if dtype == np.int16:
                wave = (np.clip(wave, -1, 1) * 32767.0).astype(np.int16)
            hf["waveform"][n] = wave
            target = np.zeros(CLASSES, dtype=bool)
            target[classes] = True
            hf["target"][n] = target


def _mp3(wave: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, SR, format="MP3")
    return buf.getvalue()


def write_passt(path: Path, rows: list[tuple[str, bytes, list[int]]]) -> None:
    """As `create_h5pymp3_dataset.py` does: S20 names, variable-length uint8 MP3 files and the
    target bit-packed along the class axis."""
    targets = np.zeros((len(rows), CLASSES), dtype=bool)
    for n, (_, _, classes) in enumerate(rows):
        targets[n, classes] = True
    packed = np.packbits(targets, axis=-1)
    with h5py.File(path, "w") as hf:
        names = hf.create_dataset("audio_name", shape=(len(rows),), dtype="S20")
        mp3 = hf.create_dataset("mp3", shape=(len(rows),), dtype=h5py.vlen_dtype(np.uint8))
        target = hf.create_dataset("target", shape=packed.shape, dtype=packed.dtype)
        for n, (name, data, _) in enumerate(rows):
            names[n] = name
            mp3[n] = np.frombuffer(data, dtype=np.uint8)
            target[n] = packed[n]


def _rows(ds: Path, split: str) -> dict[str, tuple[list[int], np.ndarray]]:
    out = {}
    for path in DatasetInfo.load(ds).shard_paths(split):
        for row in pq.read_table(path).to_pylist():
            wave, rate = sf.read(io.BytesIO(row["audio"]), dtype="float32")
            assert rate == SR
            out[row["clip_id"]] = (row["labels"], wave)
    return out


@pytest.fixture(scope="module")
def hdf5_input(tmp_path_factory) -> dict:
    """A PANNs float32 file and a PANNs int16 file (train), a PaSST MP3 file (eval), with the
    expected good rows (id -> classes, audio) and rejections (id -> reason)."""
    root = tmp_path_factory.mktemp("hdf5_input")
    good: dict[str, tuple[list[int], np.ndarray]] = {}
    bad: dict[str, str] = {}
    old = []
    for i in range(4):
        wave, classes = _tone(200 + 40 * i), sorted({i, 10 + i, 300 + i})
        old.append((f"Y{_ytid(i)}.wav", wave, classes))
        good[_ytid(i)] = (classes, wave)
    old.append(("", np.zeros(SAMPLES, np.float32), []))  # a clip the script did not find
    bad["old.h5#4"] = "missing"
    old.append((f"Y{_ytid(5)}.wav", np.zeros(SAMPLES, np.float32), [7]))
    bad[_ytid(5)] = "silent"
    old.append((f"Y{_ytid(6)}.wav", _tone(500), []))
    bad[_ytid(6)] = "no_labels"
    old.append((f"Y{_ytid(7)}.wav", _tone(500) * 32767, [8]))  # int16 scale stored as float
    bad[_ytid(7)] = "clipped"
    write_panns(root / "old.h5", old, np.float32)

    new = [(f"Y{_ytid(1)}.wav", _tone(900), [1])]  # an id the first file holds
    bad[_ytid(1)] = "duplicate"
    for i in range(8, 11):
        wave, classes = _tone(150 + 30 * i), [i]
        new.append((f"Y{_ytid(i)}.wav", wave, classes))
        good[_ytid(i)] = (classes, (np.clip(wave, -1, 1) * 32767).astype(np.int16) / 32767)
    write_panns(root / "new.h5", new, np.int16)

    eval_good: dict[str, tuple[list[int], np.ndarray]] = {}
    passt = []
    for i in range(20, 23):
        data, classes = _mp3(_tone(250 + 60 * i)), sorted({i, 400 - i})
        # The unbalanced file names clips "NN/Y<id>.mp3".
        passt.append((f"{i - 20:02d}/Y{_ytid(i)}.mp3", data, classes))
        eval_good[_ytid(i)] = (classes, sf.read(io.BytesIO(data), dtype="float32")[0])
    passt.append((f"Y{_ytid(23)}.mp3", b"not an mp3 at all" * 20, [3]))
    bad[_ytid(23)] = "corrupt"
    passt.append((f"Y{_ytid(24)}.mp3", b"", [3]))
    bad[_ytid(24)] = "empty"
    write_passt(root / "eval_segments_mp3.hdf", passt)
    return {"root": root, "good": good, "eval_good": eval_good, "bad": bad}


def test_panns_and_passt_files_ingest_every_good_row(hdf5_input, tmp_path):
    root = hdf5_input["root"]
    out = tmp_path / "ds"
    entries = prepare_hdf5(
        out,
        splits={
            "train": [str(root / "old.h5"), str(root / "new.h5")],
            "eval": [str(root / "*.hdf")],
        },
        labels=LABELS,
        sample_rate=SR,
        progress=False,
    )
    assert verify(out).ok, verify(out).problems
    for split, expected in (("train", hdf5_input["good"]), ("eval", hdf5_input["eval_good"])):
        got = _rows(out, split)
        assert sorted(got) == sorted(expected), split
        for clip_id, (classes, wave) in expected.items():
            labels, stored = got[clip_id]
            assert labels == classes, clip_id
            # 16-bit FLAC in the shard: within a few quantisation steps of the source samples.
            np.testing.assert_allclose(stored[: len(wave)], wave, atol=2e-4, err_msg=clip_id)
    rejected = {r["clip_id"]: r["reason"] for entry in entries.values() for r in entry["rejected"]}
    assert rejected == hdf5_input["bad"]
    dup = next(r for r in entries["train"]["rejected"] if r["reason"] == "duplicate")
    assert "earlier in this split" in dup["detail"]


def test_sample_rate_attribute_is_the_source_rate(tmp_path):
    path = tmp_path / "low.h5"
    write_panns(path, [(f"Y{_ytid(1)}.wav", _tone(300), [2])], np.int16)
    with h5py.File(path, "a") as hf:
        hf.attrs["sample_rate"] = np.int32(SR // 2)  # the same samples, said to be 8 kHz
    prepare_hdf5(tmp_path / "ds", splits={"train": [str(path)]}, labels=LABELS, sample_rate=SR)
    (row,) = pq.read_table(DatasetInfo.load(tmp_path / "ds").shard_paths("train")[0]).to_pylist()
    assert row["num_frames"] == 2 * SAMPLES  # resampled 8 kHz -> 16 kHz


def test_layout_and_target_errors_name_the_file_and_the_fix(tmp_path):
    odd = tmp_path / "odd.h5"
    with h5py.File(odd, "w") as hf:
        hf.create_dataset("audio", data=np.zeros(3))
    with pytest.raises(DatasetError, match=r"odd\.h5: not a PANNs .* holds audio"):
        prepare_hdf5(tmp_path / "a", splits={"train": [str(odd)]}, labels=LABELS)
    narrow = tmp_path / "narrow.h5"
    with h5py.File(narrow, "w") as hf:
        hf.create_dataset("audio_name", data=np.array([b"Yabcdefghijk.wav"]))
        hf.create_dataset("waveform", data=np.zeros((1, 10), np.int16))
        hf.create_dataset("target", data=np.zeros((1, 10), bool))
    with pytest.raises(DatasetError, match=r"narrow\.h5: target .* pass --labels"):
        prepare_hdf5(tmp_path / "b", splits={"train": [str(narrow)]}, labels=LABELS)
    with pytest.raises(DatasetError, match="no HDF5 files match"):
        prepare_hdf5(tmp_path / "c", splits={"train": [str(tmp_path / "none*.h5")]}, labels=LABELS)
    assert not (tmp_path / "a" / "manifest.json").exists()


def test_cli_records_coverage_of_the_official_lists(hdf5_input, tmp_path, capsys):
    root = hdf5_input["root"]
    present = sorted(hdf5_input["eval_good"])
    official = present[:2] + ["zzzzzzzzzz1", "zzzzzzzzzz2"]
    csv = tmp_path / "eval_segments.csv"
    csv.write_text(
        "# Segments csv created Sun Mar  5 10:54:31 2017\n"
        "# num_ytids=4, num_segs=4, num_unique_labels=1, num_positive_labels=4\n"
        "# YTID, start_seconds, end_seconds, positive_labels\n"
        + "".join(f'{y}, 30.000, 40.000, "/m/09x0r"\n' for y in official)
    )
    out = tmp_path / "ds"
    rc = main(
        ["prepare", "hdf5", "--train", str(root / "new.h5"), "--eval", str(root / "*.hdf")]
        + ["--eval-segments", str(csv), "--out", str(out), "--sample-rate", str(SR)]
        + ["--no-progress"]
    )
    assert rc == 0
    cov = json.loads((out / "manifest.json").read_text())["splits"]["eval"]["coverage"]
    held, listed = set(present), set(official)
    assert (cov["official_ids"], cov["present"], cov["missing"], cov["extra"]) == (
        len(listed),
        len(held & listed),
        len(listed - held),
        len(held - listed),
    )
    assert cov["missing_ids"] == sorted(listed - held)
    text = capsys.readouterr().out
    assert "eval vs eval_segments.csv: 2 of 4 official clips present (50.0%)" in text
    assert "fingerprint " in text


def test_forced_layout_that_does_not_fit_is_refused(hdf5_input, tmp_path):
    with pytest.raises(DatasetError, match=r"layout passt needs dataset\(s\) mp3"):
        prepare_hdf5(
            tmp_path / "ds",
            splits={"train": [str(hdf5_input["root"] / "new.h5")]},
            labels=LABELS,
            layout="passt",
        )
