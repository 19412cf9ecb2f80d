"""The run root: a local folder, a shared mount, or an object-store URI (`s3://`, `gs://`, ...).

Ray Train and Tune write checkpoints and Tune state through pyarrow's file systems, which take
either form. audiosweep's own files in a run folder (config.yaml, metrics.jsonl, the per-class
AP, the final weights, the sweep report) go through the same file systems here, so the root that
every node must see can be a bucket instead of a mount. Credentials are never part of the
config: pyarrow takes them from each process's environment (AWS/GCP environment variables,
instance roles, workload identity), see infra/README.md.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from audiosweep.errors import StorageError

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
# What pyarrow.fs.FileSystem.from_uri opens (with the file systems pyarrow is built with).
SCHEMES = ("file", "s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")
_CHUNK = 8 << 20


def is_uri(location: str) -> bool:
    return _SCHEME.match(str(location)) is not None


def resolve_root(location: str) -> str:
    """An absolute local path, or the URI as given (without a trailing slash).

    Only the scheme is checked here: opening an object store may need the network and the
    nodes' credentials, which the submitting machine need not have."""
    location = str(location)
    match = _SCHEME.match(location)
    if match is None:
        return str(Path(location).expanduser().resolve())
    if match.group(1).lower() not in SCHEMES:
        raise StorageError(
            f"run root {location!r}: unknown scheme {match.group(1)!r} "
            f"(use a path every node mounts, or one of {', '.join(s + '://' for s in SCHEMES)})"
        )
    if len(location) == len(match.group(0)) or location[len(match.group(0)) :].strip("/") == "":
        raise StorageError(f"run root {location!r} names no bucket or folder")
    return location.rstrip("/")


def join(root: str, *parts: str) -> str:
    """`root/part/...` for a local path or a URI."""
    if is_uri(root):
        return "/".join([str(root).rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(root, *parts))


def name_of(location: str) -> str:
    return str(location).rstrip("/").rsplit("/", 1)[-1]


class Folder:
    """One folder of the run root: small whole-file reads and writes, local or remote.

    Local folders use the operating system directly (writes go to a temporary name and are
    renamed, so a file is never seen half-written); URIs go through pyarrow's file system for
    the scheme, where an object appears only once its upload completes."""

    def __init__(self, location: str) -> None:
        self.location = str(location)
        self.remote = is_uri(self.location)
        self._fs = None
        self._path = self.location

    def _filesystem(self):
        if self._fs is None:
            import pyarrow.fs

            try:
                self._fs, self._path = pyarrow.fs.FileSystem.from_uri(self.location)
            except (OSError, ValueError) as err:  # ArrowInvalid is a ValueError
                raise StorageError(
                    f"cannot open {self.location}: {' '.join(str(err).split())}"
                ) from None
        return self._fs

    def _remote(self, name: str) -> str:
        self._filesystem()
        return f"{self._path.rstrip('/')}/{name}" if name else self._path

    def __str__(self) -> str:
        return self.location

    def child(self, *parts: str) -> Folder:
        return Folder(join(self.location, *parts))

    def makedirs(self) -> None:
        if self.remote:
            self._filesystem().create_dir(self._remote(""), recursive=True)
        else:
            Path(self.location).mkdir(parents=True, exist_ok=True)

    def exists(self, name: str = "") -> bool:
        if not self.remote:
            return Path(self.location, name).exists()
        import pyarrow.fs

        info = self._filesystem().get_file_info(self._remote(name))
        return info.type != pyarrow.fs.FileType.NotFound

    def is_empty(self) -> bool:
        return not self.subfolders() and not self.files()

    def _entries(self):
        import pyarrow.fs

        selector = pyarrow.fs.FileSelector(self._remote(""), allow_not_found=True)
        return self._filesystem().get_file_info(selector)

    def subfolders(self) -> list[str]:
        """Names of the folders inside, sorted; none if the folder does not exist."""
        return self._names(folders=True)

    def files(self) -> list[str]:
        """Names of the files inside, sorted; none if the folder does not exist."""
        return self._names(folders=False)

    def _names(self, *, folders: bool) -> list[str]:
        if not self.remote:
            root = Path(self.location)
            keep = Path.is_dir if folders else Path.is_file
            return sorted(p.name for p in root.iterdir() if keep(p)) if root.is_dir() else []
        import pyarrow.fs

        kind = pyarrow.fs.FileType.Directory if folders else pyarrow.fs.FileType.File
        return sorted(name_of(i.path) for i in self._entries() if i.type == kind)

    def read_bytes(self, name: str) -> bytes:
        if not self.remote:
            return Path(self.location, name).read_bytes()
        with self._filesystem().open_input_stream(self._remote(name)) as f:
            return f.read()

    def read_text(self, name: str) -> str:
        return self.read_bytes(name).decode()

    def write_bytes(self, name: str, data: bytes) -> None:
        if not self.remote:
            target = Path(self.location, name)
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_bytes(data)
            tmp.replace(target)
            return
        with self._filesystem().open_output_stream(self._remote(name)) as f:
            f.write(data)

    def write_text(self, name: str, text: str) -> None:
        self.write_bytes(name, text.encode())

    def append_line(self, name: str, line: str) -> None:
        """Add one line; objects cannot be appended to, so a remote file is rewritten whole
        (these files hold one short line per epoch)."""
        line = line.rstrip("\n") + "\n"
        if not self.remote:
            with open(Path(self.location, name), "a") as f:
                f.write(line)
            return
        old = self.read_bytes(name) if self.exists(name) else b""
        self.write_bytes(name, old + line.encode())

    def upload(self, source: Path, name: str) -> None:
        """Copy a local file in (replacing the one of that name)."""
        if not self.remote:
            target = Path(self.location, name)
            tmp = target.with_name(f".{target.name}.tmp")
            shutil.copyfile(source, tmp)
            tmp.replace(target)
            return
        with (
            open(source, "rb") as src,
            self._filesystem().open_output_stream(self._remote(name)) as dst,
        ):
            while chunk := src.read(_CHUNK):
                dst.write(chunk)

    def upload_folder(self, source: Path, name: str) -> None:
        """Copy a local folder in as `name`. A local copy is made under a temporary name and
        renamed, so it is never seen half-written; an object store has no rename, so readers
        of a remote copy must learn from elsewhere that it is complete."""
        if not self.remote:
            target = Path(self.location, name)
            tmp = target.with_name(f".{target.name}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(source, tmp)
            tmp.replace(target)
            return
        import pyarrow.fs

        pyarrow.fs.copy_files(
            str(source), self._remote(name), destination_filesystem=self._filesystem()
        )

    def local_file(self, name: str, scratch: Path) -> Path | None:
        """A local path with the file's content (itself when local, else a copy in
        `scratch`); None if there is no such file."""
        if not self.remote:
            path = Path(self.location, name)
            return path if path.is_file() else None
        if not self.exists(name):
            return None
        target = Path(scratch, name)
        with (
            self._filesystem().open_input_stream(self._remote(name)) as src,
            open(target, "wb") as dst,
        ):
            while chunk := src.read(_CHUNK):
                dst.write(chunk)
        return target

    def delete(self) -> None:
        if not self.remote:
            shutil.rmtree(self.location, ignore_errors=True)
        elif self.exists():
            self._filesystem().delete_dir(self._remote(""))
