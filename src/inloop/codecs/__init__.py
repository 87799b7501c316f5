"""Codecs behind one interface (:class:`~inloop.codecs.base.Codec`).

``get_codec(name, params)`` builds one from the ``codecs.<name>`` section of
params.yaml; for the reference codecs, ``INLOOP_<NAME>_ENCODER``,
``INLOOP_<NAME>_DECODER`` and ``INLOOP_<NAME>_CFG_DIR`` override the paths
(handy on a cluster where binaries live per node).
"""

from __future__ import annotations

import os

from ..errors import ParamsError
from .. import names
from ..names import CONFIGS, FILTERS
from .base import Codec, EncodeJob
from .hm import HM
from .vtm import ECM, VTM
from .x265 import X265

CODECS: dict[str, type[Codec]] = {c.name: c for c in (X265, HM, VTM, ECM)}
assert tuple(CODECS) == names.CODECS, "inloop.names.CODECS lists the codecs' names in this order"

__all__ = ["CODECS", "CONFIGS", "FILTERS", "Codec", "EncodeJob", "get_codec"]


def get_codec(name: str, params: dict | None = None) -> Codec:
    """The codec ``name`` configured from ``params['codecs'][name]``."""
    if name not in CODECS:
        raise ParamsError(f"unknown codec {name!r}; known: {', '.join(CODECS)}")
    section = dict(((params or {}).get("codecs") or {}).get(name) or {})
    if name != "x265":
        for key in ("encoder", "decoder", "cfg_dir"):
            env = os.environ.get(f"INLOOP_{name.upper()}_{key.upper()}")
            if env:
                section[key] = env
    if name == "hm" and "ffmpeg" not in section:
        section["ffmpeg"] = ((params or {}).get("codecs") or {}).get("x265", {}).get("ffmpeg")
    try:
        return CODECS[name](**section)
    except TypeError as exc:
        raise ParamsError(f"params codecs.{name}: {exc}") from None
