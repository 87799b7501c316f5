"""Patch stores: (decoded with filters off, original) pairs cut into training patches.

GL-Fusion IV.B trains on random 128x128 patches of frames coded with the
in-loop filters off, one store per codec / configuration / QP. A store is a
directory holding

* ``train.npy`` and ``val.npy``: arrays of shape (N, T + 1, 1, P, P) in the
  sample type of the source (uint8, or uint16 above 8 bit); ``[:, :T]`` are
  the decoded (network input) patches of T consecutive frames and ``[:, T]``
  the original of the centre frame (the target). T = ``frames`` is 1 for
  single-frame filters (GL-Fusion, SPiLF, the baselines) and 7 for
  NL-ConvLSTM (its section 3: three frames before and three after the target);
* ``meta.json``: patch size, frames, bit depth, planes, sources per split, counts.

The arrays are read through a memory map, so loading never bounds training:
a batch is a fancy-indexed read of the rows it needs, and flips/transposes
happen on the device (:mod:`inloop.training.data`).

Validation is split by source, never by patch: whole clips or images go to
``val`` so no validation patch shares content with a training patch. Each
plane listed in ``planes`` gives its own single-channel patches (chroma planes
at their own, half, resolution), so one network serves every filtered plane.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import InloopError
from ..fsutil import atomic_dir, write_json
from ..yuv import PLANE_INDEX, YuvFormat, YuvReader, parse_yuv_name


@dataclass(frozen=True)
class PatchSource:
    """One clip or image: its original and its decode with filters off."""

    name: str
    original: Path
    decoded: Path
    fmt: YuvFormat


def sources_from_paths(originals: list[str], decodeds: list[str]) -> list[PatchSource]:
    """Pair originals with decodes (same order); formats come from the YUV names."""
    if len(originals) != len(decodeds):
        raise InloopError(f"{len(originals)} originals but {len(decodeds)} decoded files: give them in pairs")
    out = []
    for o, d in zip(originals, decodeds):
        name, fmt = parse_yuv_name(o)
        _, dfmt = parse_yuv_name(d)
        if (fmt.width, fmt.height, fmt.bitdepth) != (dfmt.width, dfmt.height, dfmt.bitdepth):
            raise InloopError(f"{d} does not match its original {o} (size or bit depth)")
        out.append(PatchSource(name, Path(o), Path(d), fmt))
    return out


def split_by_source(names: list[str], val_fraction: float, val_sources: list[str] | None = None) -> set[str]:
    """Names of the sources that go to validation.

    ``val_sources`` names them explicitly; otherwise a ``val_fraction`` of the
    sources (at least one when there are two or more) is chosen by a stable
    hash of the name, so the split does not depend on the order of inputs.
    """
    if val_sources:
        # One list serves every store (AI: images and videos; LDP/RA: videos only): names
        # absent from this store are skipped, but a list naming none of its sources is a mistake.
        chosen = set(val_sources) & set(names)
        if not chosen:
            raise InloopError(f"train.val_sources names none of this store's sources: {sorted(val_sources)} "
                              f"(sources: {sorted(names)})")
        return chosen
    if len(names) < 2 or val_fraction <= 0:
        return set()
    k = min(len(names) - 1, max(1, round(val_fraction * len(names))))
    ranked = sorted(names, key=lambda n: hashlib.sha256(n.encode()).hexdigest())
    return set(ranked[:k])


def _patches_of_plane(orig: np.ndarray, dec: np.ndarray, size: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` random co-located windows of ``dec`` (T, h, w) and ``orig`` (h, w): (count, T + 1, 1, P, P)."""
    h, w = orig.shape
    if h < size or w < size:
        return np.empty((0, len(dec) + 1, 1, size, size), orig.dtype)
    tops = rng.integers(0, h - size + 1, count)
    lefts = rng.integers(0, w - size + 1, count)
    # Gather all windows at once: (count, size, size) index grids.
    rows = tops[:, None, None] + np.arange(size)[None, :, None]
    cols = lefts[:, None, None] + np.arange(size)[None, None, :]
    planes = np.concatenate([dec, orig[None]])  # (T + 1, h, w)
    return planes[:, rows, cols].transpose(1, 0, 2, 3)[:, :, None]


def build_patch_store(sources: list[PatchSource], out_dir: str | os.PathLike, patch_size: int = 128,
                      patches_per_frame: int = 16, planes: tuple[str, ...] = ("y",), val_fraction: float = 0.2,
                      val_sources: list[str] | None = None, seed: int = 0, max_frames: int | None = None,
                      frames: int = 1) -> dict:
    """Cut patches from every frame of every source; write the store atomically.

    With ``frames`` = T > 1 each sample is a T-frame window centred on its target
    frame; only frames with T // 2 decoded neighbours on each side are targets
    (sources shorter than T give none).
    """
    if not sources:
        raise InloopError("no sources given for the patch store")
    if frames < 1 or frames % 2 == 0:
        raise InloopError(f"frames={frames}: the temporal window must be odd (target in the centre)")
    half = frames // 2
    for p in planes:
        if p not in PLANE_INDEX:
            raise InloopError(f"unknown plane {p!r} in train.planes (use y, u, v)")
    depths = {s.fmt.bitdepth for s in sources}
    if len(depths) != 1:
        raise InloopError(f"sources mix bit depths {sorted(depths)}; build one store per bit depth")
    bitdepth = depths.pop()
    dtype = np.uint8 if bitdepth == 8 else np.uint16
    val_names = split_by_source([s.name for s in sources], val_fraction, val_sources)
    # The rows of each split are known before any pixel is read (frames, planes, plane sizes), so each array is
    # written in place through a memory map: the peak memory is one window of frames, not the store (issue #28
    # item 3: the chunks were concatenated in memory, twice the store, 2 x 3.7 GB for NL-ConvLSTM's).
    plan, rows = [], {"train": 0, "val": 0}
    for src in sources:
        split = "val" if src.name in val_names else "train"
        with YuvReader(src.original, src.fmt) as orig, YuvReader(src.decoded, src.fmt) as dec:
            n = len(dec) if max_frames is None else min(len(dec), max_frames)
            if len(orig) < n:
                raise InloopError(f"{src.original} has {len(orig)} frames, its decode {src.decoded} has {len(dec)}")
        shapes = {"y": (src.fmt.height, src.fmt.width), "u": src.fmt.chroma_shape, "v": src.fmt.chroma_shape}
        per_frame = sum(patches_per_frame for p in planes if min(shapes[p]) >= patch_size)
        count = max(0, n - 2 * half) * per_frame
        plan.append((src, split, n, count))
        rows[split] += count
    if rows["train"] == 0:
        raise InloopError(f"no training patches: every source is smaller than patch_size={patch_size}, "
                          f"shorter than frames={frames}, or went to validation "
                          "(train.patch_size, train.val_fraction)")
    rng = np.random.default_rng(seed)
    used: dict[str, list[dict]] = {"train": [], "val": []}
    meta = {"patch_size": patch_size, "frames": frames, "bitdepth": bitdepth, "planes": list(planes), "seed": seed,
            "patches_per_frame": patches_per_frame, "counts": rows, "sources": used}
    with atomic_dir(out_dir) as tmp:  # the whole store swapped in at once: a failure leaves the previous one
        arrays = {split: np.lib.format.open_memmap(tmp / f"{split}.npy", mode="w+", dtype=dtype,
                                                   shape=(rows[split], frames + 1, 1, patch_size, patch_size))
                  for split in ("train", "val")}
        at = {"train": 0, "val": 0}
        for src, split, n, count in tqdm(plan, desc="patches", unit="source", leave=False):
            first = at[split]
            with YuvReader(src.original, src.fmt) as orig, YuvReader(src.decoded, src.fmt) as dec:
                for i in range(half, n - half):
                    fo, window = orig[i], [dec[j] for j in range(i - half, i + half + 1)]
                    for p in planes:
                        k = PLANE_INDEX[p]
                        stack = np.stack([np.asarray(f[k]) for f in window])
                        patches = _patches_of_plane(np.asarray(fo[k]), stack, patch_size, patches_per_frame, rng)
                        arrays[split][at[split]:at[split] + len(patches)] = patches
                        at[split] += len(patches)
            if at[split] - first != count:  # the plan and the cut disagree: a bug, never a short store
                raise InloopError(f"{src.decoded}: {at[split] - first} patches cut where {count} were planned")
            used[split].append({"name": src.name, "original": str(src.original), "decoded": str(src.decoded),
                                "frames": n, "patches": count})
        for arr in arrays.values():
            arr.flush()
        del arrays
        write_json(tmp / "meta.json", meta)
    return meta


def open_patch_store(store: str | os.PathLike) -> tuple[dict, np.ndarray, np.ndarray]:
    """``(meta, train, val)`` with the arrays memory-mapped read-only."""
    import json

    store = Path(store)
    meta_path = store / "meta.json"
    if not meta_path.is_file():
        raise InloopError(f"{store} is not a patch store (no meta.json); run `inloop patches` first")
    try:
        meta = json.loads(meta_path.read_text())
        train = np.load(store / "train.npy", mmap_mode="r")
        val = np.load(store / "val.npy", mmap_mode="r")
    except (OSError, ValueError, EOFError) as exc:
        raise InloopError(f"{store}: unreadable patch store ({exc}); run `inloop patches` again") from None
    dtype = np.uint8 if int(meta.get("bitdepth", 8)) == 8 else np.uint16
    for name, arr in (("train", train), ("val", val)):
        if arr.dtype != dtype:  # a float store could hold NaN, which would train without a word
            raise InloopError(f"{store}/{name}.npy holds {arr.dtype} samples, a {meta.get('bitdepth', 8)}-bit store "
                              f"holds {np.dtype(dtype).name}: run `inloop patches` again")
    want = (meta.get("frames", 1) + 1, 1, meta.get("patch_size"), meta.get("patch_size"))
    for name, arr in (("train", train), ("val", val)):
        if arr.shape[1:] != want or len(arr) != (meta.get("counts") or {}).get(name):
            raise InloopError(f"{store}/{name}.npy holds {arr.shape}, its meta.json says "
                              f"{(meta.get('counts') or {}).get(name)} x {want}: the store is inconsistent; "
                              "run `inloop patches` again")
    return meta, train, val
