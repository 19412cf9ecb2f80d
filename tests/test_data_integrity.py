"""A crash mid-write leaves no complete-looking dataset; `verify` catches damaged shards."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import pytest

from audiosweep.cli import main
from audiosweep.data import DatasetError, DatasetInfo, prepare_demo, read_split, verify

TINY = dict(clip_seconds=1.0, sample_rate=16000, seed=3)

CRASHING_INGEST = textwrap.dedent(
    """
    import os, signal, sys
    import audiosweep.data.demo as demo

    real = demo.generate_clip
    def generate_then_die(split, index, **kw):
        if split == "train" and index == 14:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no atexit: a real crash
        return real(split, index, **kw)
    demo.generate_clip = generate_then_die
    demo.prepare_demo(sys.argv[1], train_clips=30, eval_clips=5, clip_seconds=1.0,
                      sample_rate=16000, seed=3, shard_mb=0.1, progress=False)
    """
)


def test_crash_mid_write_leaves_no_complete_dataset(tmp_path):
    out = tmp_path / "ds"
    proc = subprocess.run([sys.executable, "-c", CRASHING_INGEST, str(out)], capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    finished = sorted(p.name for p in (out / "train").glob("part-*.parquet"))
    assert finished, "the crash should come after some shards were completed"
    assert not (out / "manifest.json").exists()
    with pytest.raises(DatasetError, match="not a complete dataset"):
        DatasetInfo.load(out)
    with pytest.raises(DatasetError, match="not a complete dataset"):
        read_split(out, "train")
    report = verify(out, progress=False)
    assert not report.ok and "no manifest.json" in report.problems[0]

    # The leftovers are recognised and replaced by a clean re-run.
    prepare_demo(out, train_clips=30, eval_clips=5, shard_mb=0.1, progress=False, **TINY)
    assert DatasetInfo.load(out).rows("train") == 30
    assert verify(out, progress=False).ok


def test_verify_detects_a_flipped_byte(tmp_path, capsys):
    out = tmp_path / "ds"
    prepare_demo(out, train_clips=8, eval_clips=4, progress=False, **TINY)
    assert main(["verify", str(out), "--no-progress"]) == 0
    assert "ok: 12 clips in 2 shard(s)" in capsys.readouterr().out

    shard = out / "train" / "part-00000.parquet"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))

    report = verify(out, progress=False)
    assert not report.ok
    assert any("train/part-00000.parquet: sha256 mismatch" in p for p in report.problems)
    assert main(["verify", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "train/part-00000.parquet: sha256 mismatch" in err and "verify failed" in err


def test_verify_detects_row_count_and_missing_shard(tmp_path):
    out = tmp_path / "ds"
    prepare_demo(out, train_clips=6, eval_clips=3, progress=False, **TINY)
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["splits"]["train"]["shards"][0]["rows"] = 7
    manifest_path.write_text(json.dumps(manifest))
    (out / "eval" / "part-00000.parquet").unlink()
    problems = verify(out, progress=False).problems
    assert any("train/part-00000.parquet: 6 rows, manifest says 7" in p for p in problems)
    assert any("eval/part-00000.parquet: listed in the manifest but missing" in p for p in problems)
