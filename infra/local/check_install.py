"""Check that an installed audiosweep stack works by using it, not by the installer's exit code.

Run with the venv's interpreter: `python infra/local/check_install.py`. Prints one line per
failed check, naming the distribution to repair, and exits 1 if any check failed. Imports
nothing from audiosweep, so it also judges an environment the package cannot import in.
"""

from __future__ import annotations

import importlib
import io
import sys

# (distribution, import name): what `make setup` must leave importable.
STACK = [
    ("numpy", "numpy"),
    ("torch", "torch"),
    ("torchaudio", "torchaudio"),
    ("torchvision", "torchvision"),
    ("timm", "timm"),
    ("dcls", "DCLS"),
    ("ray", "ray"),
    ("mlflow", "mlflow"),
    ("pyarrow", "pyarrow"),
    ("optuna", "optuna"),
    ("safetensors", "safetensors"),
    ("soundfile", "soundfile"),
    ("onnx", "onnx"),
    ("onnxruntime", "onnxruntime"),
]


def _flac_round_trip() -> None:
    import numpy as np
    import soundfile as sf

    tone = np.sin(np.linspace(0.0, 200.0, 1600, dtype=np.float32)) * 0.5
    buf = io.BytesIO()
    sf.write(buf, tone, 16000, format="FLAC", subtype="PCM_16")
    buf.seek(0)
    decoded, rate = sf.read(buf, dtype="float32")
    if rate != 16000 or decoded.shape != tone.shape or float(np.abs(decoded - tone).max()) > 1e-3:
        raise RuntimeError("FLAC round trip changed the signal")


def _torch_ops() -> None:
    import torch
    import torchaudio

    mel = torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_fft=400, n_mels=16)
    out = mel(torch.zeros(1, 1600))
    if out.shape[-2] != 16:
        raise RuntimeError(f"unexpected mel shape {tuple(out.shape)}")


def failures() -> list[str]:
    """Return one line per failed check (empty when the stack works)."""
    problems = []
    for dist, module in STACK:
        try:
            importlib.import_module(module)
        except Exception as exc:  # any import failure is a broken install
            problems.append(f"{dist}: `import {module}` fails: {type(exc).__name__}: {exc}")
    checks = [("soundfile", _flac_round_trip), ("torchaudio", _torch_ops)]
    for dist, check in checks:
        if any(p.startswith(f"{dist}:") for p in problems):
            continue
        try:
            check()
        except Exception as exc:
            problems.append(
                f"{dist}: {check.__name__.strip('_')} fails: {type(exc).__name__}: {exc}"
            )
    return problems


def main() -> int:
    problems = failures()
    for line in problems:
        print(f"install check: {line}".replace("\n", " "), file=sys.stderr)
    if not problems:
        print(f"install check: ok ({len(STACK)} packages import, FLAC decodes)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
