"""CNN in-loop / post-loop filters and their registry.

``MODELS`` maps a params name (``models.name``) to a network class; a new
paper's network registers itself with ``@register("name")`` in its own module,
which is then imported below. All networks are :class:`ResidualFilter`\\ s:
``Y = X + R`` on a normalised frame in [0, 1], any H x W.

Which planes are filtered (luma only, or chroma too) is the caller's choice:
a network filters the ``in_channels`` planes it is given.
"""

from inloop.models.registry import (
    MODELS,
    ResidualFilter,
    build_model,
    count_parameters,
    model_kwargs,
    pad_to_multiple,
    register,
)
from inloop.models.costs import macs_per_pixel
from inloop.models import baselines, glfusion, nlconvlstm, spilf  # noqa: E402,F401  (registers the networks)
from inloop.models.baselines import ARCNN, VRCNN, DnCNN
from inloop.models.glfusion import GLFusion
from inloop.models.nlconvlstm import NLConvLSTM
from inloop.models.spilf import SPiLF
from inloop.models.init import lsuv_init

__all__ = [
    "MODELS", "ResidualFilter", "build_model", "count_parameters", "macs_per_pixel", "model_kwargs",
    "pad_to_multiple", "register", "lsuv_init", "GLFusion", "NLConvLSTM", "SPiLF", "ARCNN", "DnCNN", "VRCNN",
]
