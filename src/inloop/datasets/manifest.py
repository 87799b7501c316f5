"""Per-dataset manifests: ``manifest.json`` (complete) and ``manifest.csv`` (the main columns).

One entry per sequence: name, class, path, W, H, fps, frames, bit depth, source,
licence, split -- plus kind, origin, geometry/crop, colour conversion and byte
count. Paths are relative to the manifest's folder. :func:`verify_manifest`
checks every file's size against W x H x 1.5 x frames.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from ..fsutil import atomic_write, write_json
from ..yuv import YuvFormat
from .download import DatasetError

CSV_COLUMNS = ("name", "class", "path", "width", "height", "fps", "frames", "bitdepth",
               "source", "license", "split", "kind", "origin", "bytes")


def manifest_entry(clip, path: Path, record: dict | None = None, spec_hash: str | None = None) -> dict:
    e = {
        "name": clip.name, "class": clip.cls, "path": Path(path).name,
        "width": clip.fmt.width, "height": clip.fmt.height, "fps": clip.fmt.fps, "frames": clip.frames,
        "bitdepth": clip.fmt.bitdepth, "source": clip.source, "license": clip.license, "split": clip.split,
        "kind": clip.kind, "origin": clip.origin, "bytes": clip.fmt.frame_bytes * clip.frames,
        "start_frame": clip.start,
    }
    if record:
        e["geometry"] = record.get("geometry")
        e["conversion"] = {k: record.get(k) for k in ("matrix", "range", "scaler")}
        e["command"] = record.get("command")
    if spec_hash:
        e["spec_hash"] = spec_hash
    return e


def write_manifest(out_dir: str | os.PathLike, dataset: str, entries: list[dict], extra: dict | None = None) -> Path:
    """Write the CSV, then the JSON (the JSON is what pipelines wait for), atomically."""
    out_dir = Path(out_dir)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for e in entries:
        w.writerow(e)
    with atomic_write(out_dir / "manifest.csv", "w") as fh:
        fh.write(buf.getvalue())
    write_json(out_dir / "manifest.json", {"dataset": dataset, **(extra or {}), "clips": entries})
    return out_dir / "manifest.json"


def read_manifest(path: str | os.PathLike) -> dict | None:
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc}); delete it and fetch again") from None


def verify_manifest(path: str | os.PathLike) -> list[dict]:
    """Check every entry's file exists with W x H x 1.5 x frames (x2 above 8 bit) bytes."""
    path = Path(path)
    data = read_manifest(path)
    if data is None:
        raise DatasetError(f"{path}: no manifest; run `inloop datasets fetch {path.parent.name}`")
    for e in data["clips"]:
        try:
            f = path.parent / e["path"]
            fmt = YuvFormat(e["width"], e["height"], e["bitdepth"], e["fps"])
            want = fmt.frame_bytes * int(e["frames"])
        except Exception as exc:  # noqa: BLE001 - an edited entry: odd sizes, missing keys, wrong types
            raise DatasetError(f"{path}: clip {e.get('name', '?')!r}: {type(exc).__name__}: "
                               f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
        if not f.is_file():
            raise DatasetError(f"{path}: {f} is missing")
        if f.stat().st_size != want:
            raise DatasetError(f"{f}: {f.stat().st_size} bytes, the manifest says {e['frames']} frames of "
                               f"{e['width']}x{e['height']} ({want} bytes)")
    return data["clips"]
