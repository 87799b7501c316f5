"""Datasets: registry, download + verify + extract, conversion to YUV, manifests (issue #3).

Importing this package has no side effects and downloads nothing: the
Snakefile calls :func:`clips` at parse time.
"""

from .demo import clips
from .items import Clip
from .registry import REGISTRY, get_dataset

__all__ = ["Clip", "clips", "REGISTRY", "get_dataset"]
