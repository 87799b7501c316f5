"""Atomic outputs: an interrupted job never leaves a file that looks complete.

Every writer in the project goes through :func:`atomic_path` (for programs that
write a file by name, such as FFmpeg or HM) or :func:`atomic_write` (for Python
code that writes bytes or text). Both write to a hidden temporary file in the
target's directory and ``os.replace`` it onto the target only on success.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import secrets
from pathlib import Path
from typing import Any, Iterator


def _temp_sibling(path: Path) -> Path:
    # Keep the suffix: programs such as FFmpeg pick the format from it.
    return path.with_name(f".{path.stem}.partial-{secrets.token_hex(4)}{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(path)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{tmp} was not written (expected output for {path})")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new hidden folder beside ``path``; on success it replaces ``path`` whole (the previous folder
    moved aside, then removed). On any exception the new folder is removed and ``path`` is as it was: never
    new files beside old ones (a patch store, the report)."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial-{secrets.token_hex(4)}")
    tmp.mkdir()
    old = None
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old-{secrets.token_hex(4)}")
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException:
        if old is not None and not path.exists():
            os.replace(old, path)  # put the previous folder back
            old = None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[Any]:
    """Open a temporary file for writing; it replaces ``path`` only if the block succeeds."""
    with atomic_path(path) as tmp:
        with open(tmp, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())


def finite(data: Any) -> Any:
    """``data`` with every NaN and infinity replaced by None (JSON's null): JSON has no NaN, and a bare ``NaN``
    in a file breaks every strict reader (``JSON.parse``, jq)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite(v) for v in data]
    if hasattr(data, "item") and getattr(data, "ndim", None) == 0:  # numpy scalars
        return finite(data.item())
    return data


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented, strict JSON (non-finite numbers as null: :func:`finite`), atomically."""
    text = json.dumps(finite(data), indent=2, sort_keys=False, default=str, allow_nan=False)
    with atomic_write(path, "w") as fh:
        fh.write(text + "\n")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def files_equal(a: str | os.PathLike, b: str | os.PathLike, chunk: int = 1 << 20) -> bool:
    """Byte-for-byte comparison of two files without loading them whole."""
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(chunk), fb.read(chunk)
            if x != y:
                return False
            if not x:
                return True
