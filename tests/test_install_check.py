"""The install check that `make setup` ends with, run on the venv the suite itself uses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CHECK = Path(__file__).resolve().parents[1] / "infra" / "local" / "check_install.py"


def test_install_check_passes_on_this_venv():
    result = subprocess.run([sys.executable, str(CHECK)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "FLAC decodes" in result.stdout


def test_install_check_names_a_package_that_cannot_load(tmp_path):
    # A soundfile whose C library is missing fails at import, as the pure wheel does.
    (tmp_path / "soundfile.py").write_text(
        "raise OSError(\"cannot load library 'libsndfile.so'\")\n"
    )
    result = subprocess.run(
        [sys.executable, str(CHECK)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("install check: soundfile: `import soundfile` fails: OSError")
