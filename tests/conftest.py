"""Shared pytest fixtures: the real codec outputs in ../shared/fixtures and a real clip."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path | None:
    """``$INLOOP_SHARED`` or ``../shared`` beside the repository (as in CI)."""
    cand = Path(os.environ.get("INLOOP_SHARED", REPO.parent / "shared"))
    return cand if (cand / "fixtures" / "codecs").is_dir() else None


@pytest.fixture(scope="session")
def codec_fixtures() -> Path:
    d = shared_dir()
    if d is None:
        pytest.skip("../shared/fixtures/codecs not found (set INLOOP_SHARED to the shared folder)")
    return d / "fixtures" / "codecs"


@pytest.fixture()
def city_yuv(codec_fixtures: Path, tmp_path: Path) -> Path:
    """The 128x96, 5-frame crop of real camera footage (cityCC0), under the YUV naming convention."""
    dst = tmp_path / "city_128x96_30fps_8bit_420.yuv"
    shutil.copyfile(codec_fixtures / "city_128x96_5f.yuv", dst)
    return dst


@pytest.fixture(scope="session")
def ffmpeg() -> str:
    from inloop.codecs.ffmpeg import find_ffmpeg

    return find_ffmpeg()


@pytest.fixture(scope="session")
def two_sources(tmp_path_factory, codec_fixtures) -> tuple[list[str], list[str]]:
    """Two real sources (cityA, cityB: copies of the city clip) and their real x265 AI decodes
    with filters off at QP 37: ``(originals, decodeds)``, for patch stores and training."""
    from inloop.codecs import EncodeJob, get_codec
    from inloop.yuv import YuvFormat

    d = tmp_path_factory.mktemp("sources")
    originals, decodeds = [], []
    for name in ("cityA", "cityB"):
        src = d / f"{name}_128x96_30fps_8bit_420.yuv"
        shutil.copyfile(codec_fixtures / "city_128x96_5f.yuv", src)
        out = d / "enc" / name / "qp37.bin"
        get_codec("x265").encode(EncodeJob(src, YuvFormat(128, 96), 5, 37, "ai", "off"), out)
        originals.append(str(src))
        decodeds.append(str(out.with_name("qp37_128x96_30fps_8bit_420.yuv")))
    return originals, decodeds
