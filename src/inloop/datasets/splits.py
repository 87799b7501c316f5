"""No test item in training: a content check across the manifests before any training data is used.

GL-Fusion IV.A tests on the CTC sequences and trains on other sources; NL-ConvLSTM
and SPiLF keep their test sets apart too. A test sequence that reached a training
folder (a copy, a widened download list, a user folder holding both) would inflate
every result without a sign. :func:`check_splits` compares the sha256 of every YUV
file the training configurations use with every test file, across all manifests
(each entry records its file's sha256 when converted; older entries are hashed
now), and names both files of any identical pair. The pipeline runs it as rule
``check_splits`` (``inloop datasets splits``) before the first patch store is cut.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..fsutil import sha256_file, write_json
from .download import DatasetError
from .manifest import read_manifest


def _entries(manifest: Path, splits: set[str]) -> list[tuple[str, Path, str]]:
    data = read_manifest(manifest)
    if data is None:
        raise DatasetError(f"{manifest}: no manifest; fetch the dataset first")
    out = []
    for e in data.get("clips", []):
        if e.get("split", "train") in splits:
            path = manifest.parent / e["path"]
            digest = e.get("sha256") or (sha256_file(path) if path.is_file() else None)
            if digest is None:
                raise DatasetError(f"{manifest}: {path} is missing")
            out.append((f"{data.get('dataset', manifest.parent.name)}/{e['name']}", path, digest))
    return out


def check_splits(train_manifests: list[str | os.PathLike], test_manifests: list[str | os.PathLike],
                 train_splits: tuple[str, ...] = ("train",), out: str | os.PathLike | None = None) -> dict:
    """Raise DatasetError naming both files if any test item's content is also a training item."""
    train = [x for m in dict.fromkeys(map(Path, train_manifests)) for x in _entries(m, set(train_splits))]
    test = [x for m in dict.fromkeys(map(Path, test_manifests)) for x in _entries(m, {"test"})]
    by_hash: dict[str, tuple[str, Path]] = {}
    for name, path, digest in train:
        by_hash.setdefault(digest, (name, path))
    leaks = [f"test item {name} ({path}) is identical to training item {by_hash[d][0]} ({by_hash[d][1]})"
             for name, path, d in test if d in by_hash]
    if leaks:
        raise DatasetError("a test sequence is in the training data, which would inflate every result: "
                           + "; ".join(leaks) + ". Remove it from the training set (or its manifest) and run again")
    result = {"train_items": len(train), "test_items": len(test), "train_splits": list(train_splits),
              "compared": "sha256 of every YUV file", "leaks": 0}
    if out:
        write_json(out, result)
    return result
