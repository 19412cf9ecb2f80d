"""Run-root folders on a local path and through a URI (pyarrow's file systems; `file://` here,
the code path an `s3://` or `gs://` run root takes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from audiosweep.errors import UserError
from audiosweep.storage import Folder, is_uri, join, resolve_root


def test_resolve_root_keeps_uris_and_makes_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_root("runs") == str(tmp_path / "runs")
    assert resolve_root("s3://bucket/audiosweep/runs/") == "s3://bucket/audiosweep/runs"
    assert resolve_root("gs://bucket/runs") == "gs://bucket/runs"
    assert is_uri("file:///tmp/x") and not is_uri("/tmp/x") and not is_uri("runs")


@pytest.mark.parametrize("root", ["ftp://host/runs", "s3://", "gs:///"])
def test_unusable_run_roots_fail_in_one_line(root):
    with pytest.raises(UserError) as err:
        resolve_root(root)
    assert "\n" not in str(err.value) and root.rstrip("/") in str(err.value)


def test_join():
    assert join("s3://b/runs", "sweeps", "x") == "s3://b/runs/sweeps/x"
    assert join("/data/runs", "sweeps", "x") == "/data/runs/sweeps/x"


@pytest.fixture(params=["path", "uri"])
def location(request, tmp_path) -> tuple[str, Path]:
    """(how the folder is named, where its files are on disk)."""
    disk = tmp_path / "runs" / "trial"
    name = disk.as_uri() if request.param == "uri" else str(disk)
    return name, disk


def test_folder_files_land_where_the_location_says(location, tmp_path):
    name, disk = location
    folder = Folder(name)
    assert folder.remote == name.startswith("file://")
    assert not folder.exists() and folder.subfolders() == [] and folder.files() == []
    folder.makedirs()
    assert folder.exists() and folder.is_empty()
    folder.write_text("config.yaml", "a: 1\n")
    folder.append_line("metrics.jsonl", '{"epoch": 1}')
    folder.append_line("metrics.jsonl", '{"epoch": 2}')
    source = tmp_path / "weights.bin"
    source.write_bytes(bytes(range(256)) * 100)
    folder.upload(source, "model.safetensors")
    folder.child("checkpoint_000000").makedirs()

    assert (disk / "config.yaml").read_text() == "a: 1\n"
    assert (disk / "metrics.jsonl").read_text() == '{"epoch": 1}\n{"epoch": 2}\n'
    assert (disk / "model.safetensors").read_bytes() == source.read_bytes()
    assert folder.files() == ["config.yaml", "metrics.jsonl", "model.safetensors"]
    assert folder.subfolders() == ["checkpoint_000000"]
    assert folder.exists("config.yaml") and not folder.exists("nothing.txt")
    assert folder.read_text("config.yaml") == "a: 1\n"

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    local = folder.local_file("metrics.jsonl", scratch)
    assert local is not None and local.read_text() == '{"epoch": 1}\n{"epoch": 2}\n'
    assert folder.local_file("nothing.txt", scratch) is None

    folder.delete()
    assert not disk.exists()


def test_local_writes_replace_whole_files(tmp_path):
    folder = Folder(str(tmp_path))
    folder.write_text("final_checkpoint.txt", "old\n")
    folder.write_text("final_checkpoint.txt", "new\n")
    assert (tmp_path / "final_checkpoint.txt").read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["final_checkpoint.txt"]  # no temp left
