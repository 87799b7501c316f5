"""The codec stage: x265 (or HM / VTM / ECM) encodes per minute on a real clip (:func:`bench_codec`)
and the wall time and parallel efficiency of ``snakemake --cores N encodes`` in a clone of the
repository (:func:`bench_encode_stage`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable

from .. import paths
from ..errors import InloopError
from ..names import CONFIGS, FILTERS
from .machine import REPO


def default_clip() -> Path | None:
    """A real clip for codec timing: the demo's city-a (352x192) if fetched, else the tests' fixture clip."""
    demo = REPO / paths.DATA / "demo"
    for cand in sorted(demo.glob("city-a_*_420.yuv")) + sorted(demo.glob("city*_420.yuv")):
        return cand
    fx = REPO / "tests" / "fixtures" / "codecs" / "city_128x96_5f.yuv"
    return fx if fx.is_file() else None


def bench_codec(clip: str | os.PathLike | None = None, frames: int | None = 8, qps: Iterable[int] = (22, 27, 32, 37),
                configs: Iterable[str] = CONFIGS, filters: Iterable[str] = FILTERS,
                codec: str = "x265", params: dict | None = None, workdir: str | os.PathLike | None = None) -> dict:
    """x265 (or ``codec``) encodes of a real clip, one at a time, as the encode rule runs them:
    per encode the encoder's own time, the wall time of the whole checked encode (encode, decode,
    checks, stats) and encodes per minute = 60 / wall; a summary over all encodes."""
    from ..codecs import EncodeJob, get_codec
    from ..yuv import YuvFormat, YuvReader, parse_yuv_name

    clip = Path(clip) if clip else default_clip()
    if clip is None or not clip.is_file():
        raise InloopError("no clip for the codec benchmark: give --codec-clip (a {name}_{W}x{H}_..._420.yuv), "
                          "or run `inloop datasets fetch demo`")
    try:
        _, fmt = parse_yuv_name(clip)
    except Exception:  # noqa: BLE001 - the shared fixture's name carries no geometry
        fmt = YuvFormat(128, 96, 8, 30.0)
    n = len(YuvReader(clip, fmt))
    frames = min(frames or n, n)
    enc = get_codec(codec, params)
    rows = []
    with tempfile.TemporaryDirectory(prefix="inloop-bench-codec-", dir=workdir) as tmp:
        src = Path(tmp) / f"clip_{fmt.width}x{fmt.height}_{fmt.fps:g}fps_{fmt.bitdepth}bit_420.yuv"
        shutil.copyfile(clip, src)
        for cfg in configs:
            for flt in filters:
                for qp in qps:
                    out = Path(tmp) / cfg / flt / f"qp{qp}.bin"
                    t0 = time.perf_counter()
                    stats = enc.encode(EncodeJob(src, fmt, frames, int(qp), cfg, flt), out)
                    wall = time.perf_counter() - t0
                    rows.append({"config": cfg, "filters": flt, "qp": int(qp), "frames": frames,
                                 "encode_s": stats.get("encode_time_s"), "decode_s": stats.get("decode_time_s"),
                                 "wall_s": wall, "encoder_fps": frames / stats["encode_time_s"]
                                 if stats.get("encode_time_s") else None, "encodes_per_min": 60.0 / wall,
                                 "kbps": stats.get("kbps")})
    total = sum(r["wall_s"] for r in rows)
    return {"codec": codec, "clip": str(clip), "width": fmt.width, "height": fmt.height, "frames": frames,
            "encodes": len(rows), "total_s": total, "encodes_per_min": 60.0 * len(rows) / total if total else None,
            "frames_per_s": frames * len(rows) / total if total else None, "threads_per_encode": 1, "rows": rows}



def bench_encode_stage(cores: Iterable[int] = (1, 2, 4, 8), configfile: str = "config/tiny.yaml",
                       repo: str | os.PathLike = REPO, workdir: str | os.PathLike | None = None,
                       keep: bool = False, timeout: float = 3600.0, log: Callable[[str], None] | None = None,
                       snakemake: str | None = None) -> dict:
    """Parallel efficiency of the Snakemake encode stage: in a ``git clone`` of the repository's
    HEAD (committed files only) the data stage runs once (``snakemake --cores 2 data``, timed
    apart), then for each N the encodes are deleted and ``snakemake --cores N encodes
    --configfile <configfile>`` is timed. Efficiency(N) = T1 / (N x TN); speed-up = T1 / TN.
    ``INLOOP_CACHE`` points to ``<repo>/results/cache`` when present (the pinned demo wheels).
    N above the machine's cores is run and marked ``oversubscribed``. ``snakemake``: the program
    to run (default: the one next to this Python, else on PATH)."""
    repo = Path(repo)
    exe = snakemake or shutil.which("snakemake", path=str(Path(sys.executable).parent)) or shutil.which("snakemake")
    if exe is None:
        raise InloopError("snakemake not found next to this Python or on PATH (install the project's .venv)")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    if "INLOOP_CACHE" not in env and (repo / paths.CACHE).is_dir():
        env["INLOOP_CACHE"] = str(repo / paths.CACHE)
    tmp = Path(tempfile.mkdtemp(prefix="inloop-bench-stage-", dir=workdir))
    clone = tmp / "inloop"
    say = log or (lambda s: None)

    def run(cmd: list[str]) -> float:
        say(" ".join(cmd))
        t0 = time.perf_counter()
        r = subprocess.run(cmd, cwd=clone, env=env, capture_output=True, text=True, timeout=timeout)
        dt = time.perf_counter() - t0
        if r.returncode != 0:
            raise InloopError(f"{' '.join(cmd)} failed in {clone} (rc {r.returncode}):\n{(r.stdout + r.stderr)[-3000:]}")
        return dt

    try:
        subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(repo), str(clone)], check=True,
                       capture_output=True, text=True)
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True).stdout.strip()
        cfg = ["--configfile", configfile] if configfile else []
        data_s = run([exe, "--cores", "2", "data", *cfg])
        rows = []
        for n in cores:
            shutil.rmtree(clone / paths.ENCODED_DIR, ignore_errors=True)
            shutil.rmtree(clone / paths.LOGS / "encode", ignore_errors=True)
            wall = run([exe, "--cores", str(int(n)), "encodes", *cfg])
            count = len(list((clone / paths.ENCODED_DIR).rglob("*.bin")))
            rows.append({"cores": int(n), "wall_s": wall, "encodes": count,
                         "encodes_per_min": 60.0 * count / wall if wall else None,
                         "oversubscribed": int(n) > (os.cpu_count() or 1)})
        t1 = next((r["wall_s"] for r in rows if r["cores"] == 1), None)
        for r in rows:
            r["speedup"] = t1 / r["wall_s"] if t1 else None
            r["efficiency"] = t1 / (r["cores"] * r["wall_s"]) if t1 else None
        return {"configfile": configfile, "commit": commit, "clone": str(clone) if keep else None,
                "data_stage_s": data_s, "cpu_count": os.cpu_count(),
                "command": f"snakemake --cores N encodes {' '.join(cfg)}".strip(), "rows": rows}
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
