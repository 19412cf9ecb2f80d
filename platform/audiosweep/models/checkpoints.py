"""Where pretrained weights come from: the paper's ImageNet checkpoints, a download cache, reading.

The table holds the ImageNet-1k checkpoints the DCLS-Audio reference code loads (URLs from its
models/convnext.py and models/metaformer.py). Table 1 of the paper marks FastViT-SA24 "no ImageNet
pretraining"; ImageNet weights for it, and for the CPU stand-ins, come from timm's ImageNet-1k
tags. Downloads go once into ``$AUDIOSWEEP_CACHE/checkpoints`` (default
``~/.cache/audiosweep``), checked against their sha256 when it is known.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

# DCLS-Gauss ImageNet weights exist only for the paper's setting.
PAPER_DCLS = ("dcls_gauss", 23, 26)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Checkpoint:
    url: str
    source: str  # layout, one of audiosweep.models.convert.SOURCES
    sha256: str | None = None  # None: not published; the load report records the actual one
    note: str = ""


# (arch, conv) -> ImageNet-1k checkpoint used by the paper. conv "dsc" also serves DCLS cases
# without their own entry: the DSC->DCLS substitution keeps every other weight.
PAPER_IMAGENET = {
    ("convnext_tiny", "dsc"): Checkpoint(
        "https://dl.fbaipublicfiles.com/convnext/convnext_tiny_1k_224_ema.pth",
        "fb-convnext",
        note="facebookresearch/ConvNeXt, ImageNet-1k, EMA",
    ),
    ("convnext_tiny", "dcls_gauss"): Checkpoint(
        "https://zenodo.org/record/8029747/files/convnext_dcls_gauss_tiny_1k_224_ema.pth",
        "fb-convnext",
        note="ConvNeXt-T DCLS-Gauss 23x23/26, ImageNet-1k, EMA (DCLS vision work)",
    ),
    ("convformer_s18", "dsc"): Checkpoint(
        "https://huggingface.co/sail/dl/resolve/main/convformer/convformer_s18.pth",
        "sail-metaformer",
        # The reference code names no DCLS ConvFormer checkpoint (its URL is empty).
        note="sail-sg/metaformer ConvFormer-S18, ImageNet-1k",
    ),
}
# arch -> timm tag of ImageNet-1k weights, for archs the paper did not initialise from ImageNet.
TIMM_IMAGENET_TAGS = {
    "fastvit_sa24": "fastvit_sa24.apple_in1k",
    "fastvit_t8": "fastvit_t8.apple_in1k",
    "convnext_atto": "convnext_atto.d2_in1k",
}


def imagenet_checkpoint(
    arch: str, conv: str, dilated_kernel_size: int | None = None, kernel_count: int | None = None
) -> Checkpoint:
    """The ImageNet-1k checkpoint that initialises the case (arch, conv).

    A DCLS case uses its own checkpoint only with the same kernel (23x23, 26 elements);
    otherwise the arch's DSC checkpoint, whose DSC kernels then give way to fresh DCLS ones.
    """
    own = PAPER_IMAGENET.get((arch, conv))
    if own is not None and (
        conv == "dsc" or (conv, dilated_kernel_size, kernel_count) == PAPER_DCLS
    ):
        return own
    if (arch, "dsc") in PAPER_IMAGENET:
        return PAPER_IMAGENET[(arch, "dsc")]
    if arch in TIMM_IMAGENET_TAGS:
        return _timm_checkpoint(TIMM_IMAGENET_TAGS[arch])
    known = sorted({a for a, _ in PAPER_IMAGENET} | set(TIMM_IMAGENET_TAGS))
    raise ValueError(
        f"no ImageNet weights known for {arch}; set model.init=random or a checkpoint path "
        f"(ImageNet weights exist for {', '.join(known)})"
    )


def _timm_checkpoint(tag: str) -> Checkpoint:
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(tag)
    if cfg is None or not cfg.hf_hub_id:
        raise ValueError(f"timm has no Hugging Face weights for {tag!r}")
    filename = cfg.hf_hub_filename or "model.safetensors"
    url = f"https://huggingface.co/{cfg.hf_hub_id}/resolve/main/{filename}"
    return Checkpoint(url, "timm", note=f"timm {tag}")


def cache_dir() -> Path:
    root = os.environ.get("AUDIOSWEEP_CACHE") or Path.home() / ".cache" / "audiosweep"
    return Path(root).expanduser() / "checkpoints"


def is_url(location: str) -> bool:
    return urllib.parse.urlparse(location).scheme in ("http", "https", "file")


def fetch(location: str, sha256: str | None = None, *, cache: Path | None = None) -> Path:
    """A local file for `location` (a path, or a URL downloaded once into the cache).

    Raises ValueError when the file's sha256 is not the expected one.
    """
    if not is_url(location):
        path = Path(location).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {location} does not exist")
        _check_sha256(path, sha256, location)
        return path
    folder = cache or cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    # Different URLs often end in the same file name (e.g. Hugging Face's model.safetensors).
    name = urllib.parse.urlparse(location).path.rsplit("/", 1)[-1] or "checkpoint"
    path = folder / f"{hashlib.sha1(location.encode()).hexdigest()[:12]}-{name}"
    with _locked(path):  # workers sharing a node (or a cache folder) download once
        if not path.is_file():
            _download(location, path)
    _check_sha256(path, sha256, location)
    return path


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _download(url: str, path: Path) -> None:
    print(f"[audiosweep] downloading {url} -> {path}")
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                shutil.copyfileobj(response, tmp, _CHUNK)
            tmp.close()
            os.replace(tmp.name, path)  # a half-written file never takes the cache name
        except BaseException:
            tmp.close()
            Path(tmp.name).unlink(missing_ok=True)
            raise


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_sha256(path: Path, expected: str | None, location: str) -> None:
    if expected is None:
        return
    actual = file_sha256(path)
    if actual != expected.lower():
        raise ValueError(f"checkpoint {location} has sha256 {actual}, expected {expected}")


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint file's contents, without unpickling arbitrary objects."""
    if Path(path).suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    # DCLS-Audio's training checkpoints pickle the script's argparse.Namespace under "args".
    with torch.serialization.safe_globals([argparse.Namespace]):
        state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path} holds a {type(state).__name__}, not a dict")
    return state
