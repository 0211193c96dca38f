"""Writing files so that nothing is ever half written: one atomic-write helper for every output.

`atomic_write(path, write_fn)` writes into a temporary file in the same folder (same file
system, so the rename is atomic), flushes and fsyncs it, then `os.replace`s it over `path`
(and fsyncs the folder, so the rename itself survives a power cut on POSIX). A reader sees
either the old file or the complete new one, never a mix; an exception, Ctrl-C or a kill
during the write leaves the old file untouched and the temporary file removed (a kill -9
can leave a ``.<name>.<random>.tmp`` file behind, never a truncated `path`).

Pairs of files (a checkpoint's arrays and its ``.json`` metadata) cannot be replaced in one
atomic step; `write_checkpoint_files` writes both temporary files completely, then swaps them
in with SIGINT/SIGTERM held off between the two renames, and records the SHA-256 of the array
file in the metadata, so that `read_checkpoint_meta` recognises a pair that does not belong
together (or a truncated / corrupted array file) and says so instead of loading it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Union

from ._report import jsonable

PathLike = Union[str, "os.PathLike[str]"]

__all__ = [
    "atomic_write",
    "atomic_open",
    "write_json",
    "write_text",
    "read_json",
    "write_checkpoint_files",
    "read_checkpoint_meta",
]


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _temporary(path: Path, write_fn: Callable[[IO[bytes]], Any]) -> Path:
    """Write through `write_fn` into a new temporary file next to `path`, flushed and fsynced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write_fn(fh)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return Path(tmp)


def atomic_write(path: PathLike, write_fn: Callable[[IO[bytes]], Any]) -> Path:
    """Write `path` atomically: `write_fn(fh)` writes to an open binary file handle.

    The folder is created if needed. The file appears under its name only once `write_fn`
    returned and the data reached the disk (temporary file in the same folder, flush, fsync,
    `os.replace`); on any error, or an interrupt, the previous `path` (if any) is unchanged.
    The new file gets the usual permissions (0666 minus the umask), not mkstemp's 0600.

    Returns:
        `path` as a `Path`.
    """
    path = Path(path)
    tmp = _temporary(path, write_fn)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def write_text(path: PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    data = text.encode("utf-8")
    return atomic_write(path, lambda fh: fh.write(data))


@contextlib.contextmanager
def atomic_open(path: PathLike):
    """``with atomic_open(path) as fh: fh.write(...)``: a text handle whose content replaces
    `path` atomically when the block ends without an exception (nothing is written otherwise)."""
    buf = io.StringIO()
    yield buf
    write_text(path, buf.getvalue())


def write_json(path: PathLike, data: Any) -> Path:
    """Write `data` as indented strict JSON to `path` atomically: numpy scalars and arrays become
    numbers and lists, NaN and inf become null (`jaxpotts._report.jsonable`)."""
    return write_text(path, json.dumps(jsonable(data), indent=2, allow_nan=False) + "\n")


def read_json(path: PathLike, what: str = "file") -> Any:
    """Parse a JSON file; a file that is not valid JSON gets a ValueError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ValueError(f"{what} {path} is not a text (JSON) file: {err}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} {path} is not valid JSON (truncated or corrupted?): {err}") from None


@contextlib.contextmanager
def _signals_held():
    """SIGINT and SIGTERM delivered only after the block (main thread, POSIX); else nothing."""
    can = hasattr(signal, "pthread_sigmask") and threading.current_thread() is threading.main_thread()
    if not can:
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class _Hashing:
    """A binary file wrapper that hashes what is written through it."""

    def __init__(self, fh: IO[bytes]):
        self._fh, self.sha256, self.size = fh, hashlib.sha256(), 0

    def write(self, data) -> int:
        data = bytes(data)
        self.sha256.update(data)
        self.size += len(data)
        return self._fh.write(data)

    def flush(self) -> None:
        self._fh.flush()

    def __getattr__(self, name):  # tell, seek, ... of the underlying file
        return getattr(self._fh, name)


def _digest(path: Path) -> tuple[str, int]:
    h, n = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
            n += len(block)
    return h.hexdigest(), n


def write_checkpoint_files(path: PathLike, write_fn: Callable[[IO[bytes]], Any], metadata: dict) -> Path:
    """Write an array file `path` (through `write_fn(fh)`) and its metadata ``path + '.json'``.

    Both are written to complete temporary files first; the two renames then run with
    SIGINT/SIGTERM held, so Ctrl-C never separates them. The metadata records the array file's
    SHA-256 and size (``"file_sha256"``, ``"file_bytes"``), which `read_checkpoint_meta` checks.
    """
    path = Path(path)
    meta_path = Path(str(path) + ".json")
    box: dict = {}

    def write_arrays(fh):
        hashing = _Hashing(fh)
        write_fn(hashing)
        box["sha256"], box["size"] = hashing.sha256.hexdigest(), hashing.size

    tmp = _temporary(path, write_arrays)
    try:
        meta = dict(metadata or {}, file_sha256=box["sha256"], file_bytes=box["size"])
        text = json.dumps(meta, indent=1, sort_keys=True).encode("utf-8")
        tmp_meta = _temporary(meta_path, lambda fh: fh.write(text))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    umask = os.umask(0)
    os.umask(umask)
    with _signals_held():
        try:
            for t in (tmp, tmp_meta):
                os.chmod(t, 0o666 & ~umask)
            os.replace(tmp, path)
            os.replace(tmp_meta, meta_path)
        except BaseException:
            for t in (tmp, tmp_meta):
                with contextlib.suppress(OSError):
                    os.unlink(t)
            raise
    _fsync_dir(path.parent)
    return path


def read_checkpoint_meta(path: PathLike) -> dict:
    """The metadata of an array file written by `write_checkpoint_files`, after checking that
    the array file is the one the metadata describes (size and SHA-256).

    Returns {} when there is no ``.json`` next to `path` (files written by other means).

    Raises:
        ValueError: the metadata is not valid JSON, or the array file is truncated, corrupted
            or replaced (its size or SHA-256 differs from the recorded one).
    """
    path = Path(path)
    meta_path = Path(str(path) + ".json")
    if not meta_path.exists():
        return {}
    meta = read_json(meta_path, "checkpoint metadata")
    if not isinstance(meta, dict):
        raise ValueError(f"checkpoint metadata {meta_path} is not a JSON object")
    expected = meta.get("file_sha256")
    if expected is not None and path.exists():
        digest, size = _digest(path)
        if size != meta.get("file_bytes", size):
            raise ValueError(
                f"{path} has {size} bytes but its metadata {meta_path.name} records "
                f"{meta['file_bytes']}: the file is truncated or was replaced; it cannot be loaded"
            )
        if digest != expected:
            raise ValueError(
                f"{path} is corrupted or does not belong to {meta_path.name} (SHA-256 differs "
                "from the recorded one); it cannot be loaded"
            )
    return meta
