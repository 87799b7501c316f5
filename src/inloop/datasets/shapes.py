"""Synthetic data roots with the papers' dataset shapes, for dry runs of the paper configs.

``snakemake -n all --configfile config/paper-X.yaml`` must show the paper's DAG
before anyone spends GPU-days on it. The DAG reads only each dataset's manifest
(clip names, frame sizes, frame counts, splits) and needs its YUV files to exist,
so :func:`write_shape` writes a manifest with the dataset's real names, counts and
sizes and an empty file per clip: a data root that looks fetched, a few kB for
DIV2K's 900 images. Nothing in it can be encoded; it is for ``-n`` only.

Where the shapes come from (used by the tests and docs/paper-shapes.md):

* DIV2K: 0001-0800 train, 0801-0900 validation; frame size 2040x1352 for every
  image (the real ones are 2040 pixels on the long side, heights vary; the DAG
  does not depend on the size);
* Flickr2K: 000001-002650, 2040x1352 likewise;
* Xiph derf: the registry's 32 files; CIF 352x288 (300 frames), 1080p 1920x1080
  (500 frames at 50 fps, 250 at 25 fps);
* JCT-VC CTC: the registry's 18 sequences, exact sizes and frame counts;
* CLIC 2022 validation: 30 images, 2048x1360 (sizes vary in the real set);
* Vimeo-90K septuplets: 64,612 train and 7,824 test clips of 7 frames, 448x256;
* Yang et al. (MFQE): 60 train and 10 test sequences, the test ones under their
  names with their sizes; 300 frames each (the real counts vary).

``scale`` (0 < scale <= 1) keeps that fraction of every split (at least one
item), for a quick shape check of Vimeo-90K's 72,436 clips; the CTC's 18
sequences, which the pipeline takes from the registry, are always all written.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..yuv import YuvFormat
from .items import Clip
from .download import DatasetError
from .manifest import manifest_entry, write_manifest
from .registry import CTC_SEQUENCES, MFQE_TEST, REGISTRY

_MFQE_TEST_SIZES = {"PeopleOnStreet": (2560, 1600, 30), "TunnelFlag": (1920, 1080, 25), "Kimono": (1920, 1080, 24),
                    "BarScene": (1920, 1080, 25), "Vidyo1": (1280, 720, 60), "Vidyo3": (1280, 720, 60),
                    "Vidyo4": (1280, 720, 60), "BasketballPass": (416, 240, 50), "RaceHorses": (416, 240, 30),
                    "MaD": (1920, 1080, 30)}


def _items(name: str) -> list[tuple[str, str, str, int, int, float, int]]:
    """(clip name, split, kind, width, height, fps, frames) of a dataset at the paper's shape."""
    if name == "div2k":
        return [(f"{i:04d}", "train" if i <= 800 else "validation", "image", 2040, 1352, 30.0, 1)
                for i in range(1, 901)]
    if name == "flickr2k":
        return [(f"{i:06d}", "train", "image", 2040, 1352, 30.0, 1) for i in range(1, 2651)]
    if name == "xiph-derf":
        out = []
        for f in REGISTRY["xiph-derf"].files:
            stem = f.fname.rsplit(".", 1)[0]
            if stem.endswith("_cif"):
                out.append((stem.replace("_", "-"), "train", "video", 352, 288, 30.0, 300))
            else:
                fps = 50.0 if stem.endswith("p50") else 25.0
                out.append((stem.replace("_", "-"), "train", "video", 1920, 1080, fps, int(10 * fps)))
        return out
    if name == "jctvc-ctc":
        return [(s.name, "test", "video", s.width, s.height, float(s.fps), s.frames) for s in CTC_SEQUENCES]
    if name == "clic2022-valid":
        return [(f"clic2022-{i:02d}", "test", "image", 2048, 1360, 30.0, 1) for i in range(1, 31)]
    if name == "vimeo90k-septuplet":
        counts = REGISTRY[name].counts
        return ([(f"{i // 1000 + 1:05d}-{i % 1000 + 1:04d}", "train", "video", 448, 256, 30.0, 7)
                 for i in range(counts["train"])] +
                [(f"test-{i // 1000 + 1:05d}-{i % 1000 + 1:04d}", "test", "video", 448, 256, 30.0, 7)
                 for i in range(counts["test"])])
    if name == "mfqe-yang":
        test = [(t, "test", "video", *_MFQE_TEST_SIZES[t][:2], float(_MFQE_TEST_SIZES[t][2]), 300) for t in MFQE_TEST]
        return [(f"train{i:02d}", "train", "video", 1280, 720, 30.0, 300) for i in range(1, 61)] + test
    raise DatasetError(f"no paper shape for dataset {name!r}; known: div2k, flickr2k, xiph-derf, jctvc-ctc, "
                       "clic2022-valid, vimeo90k-septuplet, mfqe-yang")


def write_shape(name: str, out_root: str | os.PathLike, scale: float = 1.0) -> Path:
    """Write ``{out_root}/{name}/manifest.json`` at the paper's shape with an empty file per clip."""
    if not 0 < scale <= 1:
        raise DatasetError(f"scale must be in (0, 1], got {scale}")
    ds = REGISTRY[name]
    items = _items(name)
    if scale < 1 and not ds.sequences:  # the CTC's 18 are listed by the registry: always all of them
        kept = []
        for split in dict.fromkeys(it[1] for it in items):
            of_split = [it for it in items if it[1] == split]
            kept += of_split[:max(1, round(scale * len(of_split)))]
        items = kept
    out_dir = Path(out_root) / name
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for clip_name, split, kind, w, h, fps, frames in items:
        clip = Clip(clip_name, split, kind, YuvFormat(w, h, 8, fps), frames, clip_name, ds.license,
                    cls="image" if kind == "image" else "synthetic", origin="synthetic shape (empty file)")
        (out_dir / clip.filename).touch()
        entries.append(manifest_entry(clip, out_dir / clip.filename))
    return write_manifest(out_dir, name, entries, extra={"synthetic": True, "scale": scale})


def rehearsal_items(name: str, per_split: int) -> list[tuple[str, str, str, int, int, float, int]]:
    """The items a rehearsal keeps of a dataset at the paper's shape: ``per_split`` of each split, the
    smallest frames first (then the paper's order), so a CPU can run them; every kept item has the paper's
    own name, frame size and rate (the frame count is capped where the data are written)."""
    items = _items(name)
    kept = []
    for split in dict.fromkeys(it[1] for it in items):
        of_split = [(i, it) for i, it in enumerate(items) if it[1] == split]
        of_split.sort(key=lambda p: (p[1][3] * p[1][4], p[0]))
        kept += [it for _, it in of_split[:per_split]]
    return kept


def write_rehearsal(name: str, out_root: str | os.PathLike, images: list[str | os.PathLike], per_split: int = 1,
                    frames: int = 2, first_image: int = 0, ffmpeg: str | None = None,
                    matrix: str = "bt601", range_: str = "tv", test_frames: int | None = None,
                    max_pixels: int | None = None) -> tuple[Path, int]:
    """A data root for a rehearsal of a paper config: the paper's dataset names, splits and frame sizes
    (:func:`rehearsal_items`) with real pixels: each item is one photograph of ``images`` (a different one per
    item, from ``first_image`` on, so no test item's content is in training) converted by FFmpeg to the item's
    size (:func:`inloop.datasets.convert.to_yuv`, the pipeline's own conversion), and for videos a pan of
    8 pixels per frame across it, ``min(frames, the paper's count)`` frames (``test_frames`` for the test split,
    when given). ``max_pixels``: held-out items larger than this are scaled down (aspect kept, multiples of 16),
    for a test suite that cannot afford a paper-size frame; the manifest's origin says so. Returns the manifest
    and the index of the next unused image."""
    import numpy as np

    from ..codecs.ffmpeg import find_ffmpeg
    from ..yuv import Frame, YuvReader, write_yuv
    from .convert import plan_geometry, probe_size, to_yuv

    ffmpeg = ffmpeg or find_ffmpeg()
    ds = REGISTRY[name]
    out_dir = Path(out_root) / name
    out_dir.mkdir(parents=True, exist_ok=True)
    entries, k = [], first_image
    for clip_name, split, kind, w, h, fps, paper_frames in rehearsal_items(name, per_split):
        if k >= len(images):
            raise DatasetError(f"a rehearsal of {name} needs more than {len(images)} distinct images")
        src, k = Path(images[k]), k + 1
        n = max(1, min(test_frames if split == "test" and test_frames else frames, paper_frames))
        paper_size = f"{w}x{h}"
        if split == "test" and max_pixels and w * h > max_pixels:
            f = (max_pixels / (w * h)) ** 0.5
            w, h = max(16, int(w * f) // 16 * 16), max(16, int(h * f) // 16 * 16)
        pan = 8 * (n - 1)
        geom = plan_geometry(probe_size(ffmpeg, src), (w + pan, h), multiple=8)
        ctc = {c.name: c.cls for c in CTC_SEQUENCES} if name == "jctvc-ctc" else {}
        clip = Clip(clip_name, split, kind, YuvFormat(w, h, 8, fps), n, f"{name}:{clip_name}", ds.license,
                    cls=ctc.get(clip_name) or ("image" if kind == "image" else "rehearsal"),
                    origin=f"rehearsal: {src.name} at {w}x{h} (pan of {pan} pixels over {n} frames)"
                           + (f", scaled down from the paper's {paper_size}" if paper_size != f"{w}x{h}" else ""))
        wide = out_dir / f".{clip_name}.wide.yuv"
        record = to_yuv(ffmpeg, src, wide, geom, fps=fps, image=True, matrix=matrix, range_=range_)
        with YuvReader(wide, YuvFormat(geom.width, geom.height, 8, fps)) as r:
            big = r[0]
        wide.unlink()

        def pans():
            for i in range(n):
                x = 8 * i
                yield Frame(np.ascontiguousarray(big.y[:, x:x + w]), np.ascontiguousarray(big.u[:, x // 2:(x + w) // 2]),
                            np.ascontiguousarray(big.v[:, x // 2:(x + w) // 2]))

        path = out_dir / clip.filename
        write_yuv(path, pans(), clip.fmt)
        entries.append(manifest_entry(clip, path, record))
    manifest = write_manifest(out_dir, name, entries, extra={"rehearsal": True, "per_split": per_split,
                                                            "frames": frames})
    return manifest, k
