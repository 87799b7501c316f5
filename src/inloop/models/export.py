"""Trained networks as ONNX files (issue #20): how a network reaches a codec (JVET's NNVC converts
its models from ONNX).

:func:`export_model_file` rebuilds a network from its model file (:func:`inloop.models.io.load_trained`)
and writes one self-contained ONNX file (weights inside, opset :data:`OPSET`) whose input ``x`` is
what :func:`inloop.evaluation.enhance.apply_model` gives the network: a frame (1, C, H, W) of samples
/ (2^bitdepth - 1) in [0, 1], or for a clip network (NL-ConvLSTM) the T frames centred on the target
(1, T, C, H, W); the output ``y`` is the filtered target (1, C, H, W). Height and width are dynamic
axes: one file filters any frame size.

The graph is the network's own ``forward`` with two changes that keep H and W symbolic (no value
of them is baked in); both compute what ``forward`` computes:

* padding to the network's multiple is one reflect pad of ``(-H) mod m`` rows and ``(-W) mod m``
  columns, taken even where it is zero (``forward`` skips a zero pad), then ``Y = X + s R`` on the
  crop, as :class:`~inloop.models.registry.ResidualFilter` does. The frame must be at least ``m``
  samples high and wide (the reflect pad needs it);
* NL-ConvLSTM's approximate non-local warp runs over all query blocks at once (eager PyTorch runs
  it in chunks of ``MAX_ELEMENTS`` distances to bound memory: the same numbers), and its
  temperature is a constant of the graph (it chooses the similarity in Python).

The file's metadata (``metadata_props``) says which network and settings it holds and how to feed it.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InloopError
from .costs import input_shape, is_clip, unwrap
from .io import load_trained
from .nlconvlstm import NLConvLSTM, approx_nonlocal_warp
from .registry import ResidualFilter

FORMATS = ("onnx",)
OPSET = 18


class ExportError(InloopError, RuntimeError):
    """A network that could not be exported or its file not written."""


def _one_chunk_warp(self: NLConvLSTM, query: torch.Tensor, ref: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    """:meth:`NLConvLSTM.warp` (approximate) over all query blocks at once: no loop whose count depends on H, W."""
    return approx_nonlocal_warp(query, ref, state, self.pool, self.topk, max_elements=sys.maxsize,
                                temperature=self.temperature)


class ExportGraph(nn.Module):
    """What the ONNX file computes: ``net``'s forward with symbolic padding (see the module docstring).

    Holds a copy of ``net`` (in eval mode); the network given is not changed.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        net = copy.deepcopy(unwrap(net)).eval()
        if isinstance(net, NLConvLSTM):
            net.temperature = float(net._buffers.pop("temperature"))  # read with float(): a graph constant
            if not net.exact and net.mode == "nlconvlstm":
                net.warp = _one_chunk_warp.__get__(net)
        self.net = net
        self.clip = is_clip(net)
        self.multiple = int(getattr(net, "pad_multiple", 1))
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(self.net, ResidualFilter):  # a researcher's own module: its forward as it is
            return self.net(x)
        h, w = x.shape[-2], x.shape[-1]
        frames = x.flatten(0, 1) if self.clip else x
        if self.multiple > 1:
            frames = F.pad(frames, (0, (-w) % self.multiple, 0, (-h) % self.multiple), mode=self.net.pad_mode)
        if self.clip:
            frames = frames.unflatten(0, (x.shape[0], x.shape[1]))
        target = x[:, x.shape[1] // 2] if self.clip else x
        r = self.net.residual(frames)
        return target + self.net.residual_scale * r[..., :h, :w]


@contextlib.contextmanager
def _quiet_exporter():
    """Without the exporter's notes that do not concern these networks (torchvision's operators not
    registered, a deprecation inside torch.export): errors still surface."""
    log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*treespec, LeafSpec", category=FutureWarning)
            yield
    finally:
        log.setLevel(level)


def example_input(net: nn.Module, hw: tuple[int, int] | None = None) -> torch.Tensor:
    """A batch-1 input of ``net`` (a frame, or a clip for a clip network) of ``hw`` = (H, W); by default
    about 48 x 64, rounded up to the network's padding multiple (H != W: no equality is inferred)."""
    m = int(getattr(unwrap(net), "pad_multiple", 1))
    if hw is None:
        hw = (-(-48 // m) * m, -(-64 // m) * m)
        if hw[0] == hw[1]:
            hw = (hw[0], hw[1] + m)
    g = torch.Generator().manual_seed(0)
    return torch.rand(input_shape(net, hw), generator=g)


def export_onnx(net: nn.Module, out: str | os.PathLike, example: torch.Tensor | None = None,
                metadata: dict | None = None, opset: int = OPSET) -> Path:
    """Write ``net`` as one ONNX file ``out`` with dynamic height and width axes; returns ``out``.

    ``example``: an input to trace with (default :func:`example_input`); ``metadata``: extra string
    entries for the file's ``metadata_props``.
    """
    out = Path(out)
    graph = ExportGraph(net)
    x = example if example is not None else example_input(graph.net)
    h_ax, w_ax = x.dim() - 2, x.dim() - 1
    dims = {h_ax: torch.export.Dim("height", min=graph.multiple), w_ax: torch.export.Dim("width", min=graph.multiple)}
    try:
        with torch.no_grad(), _quiet_exporter():
            program = torch.onnx.export(graph, (x,), input_names=["x"], output_names=["y"], dynamic_shapes={"x": dims},
                                        opset_version=opset, dynamo=True, external_data=False, verbose=False)
    except Exception as exc:  # noqa: BLE001 - torch.export / onnxscript raise many kinds
        raise ExportError(f"{out}: ONNX export of {type(graph.net).__name__} failed "
                          f"({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''})"
                          ) from None
    layout = "N,T,C,H,W" if graph.clip else "N,C,H,W"
    props = {"inloop.input": f"x: {layout} float32, samples / (2^bitdepth - 1) in [0, 1]"
                             + (f", T = {x.shape[1]} frames centred on the target" if graph.clip else ""),
             "inloop.output": "y: N,C,H,W float32, the filtered (target) frame in [0, 1] (not clamped)",
             "inloop.pad_multiple": str(graph.multiple), "inloop.min_size": f"{graph.multiple}x{graph.multiple}"}
    props.update({k if k.startswith("inloop.") else f"inloop.{k}": v if isinstance(v, str) else json.dumps(v)
                  for k, v in (metadata or {}).items()})
    program.model.metadata_props.update(props)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    try:
        program.save(tmp, external_data=False)
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"{out}: could not write the ONNX file ({exc.strerror or exc})") from None
    return out


def default_output(model_file: str | os.PathLike, fmt: str = "onnx", out_dir: str | os.PathLike | None = None,
                   common: str | os.PathLike | None = None) -> Path:
    """Where the export of ``model_file`` goes: beside it (``model.pt`` -> ``model.onnx``), or under
    ``out_dir`` at its path relative to ``common`` (the given files' common folder), so that
    ``results/models/<codec>/<config>/.../model.pt`` files do not overwrite each other."""
    src = Path(model_file)
    if out_dir is None:
        return src.with_suffix(f".{fmt}")
    rel = src.resolve().relative_to(Path(common).resolve()) if common is not None else Path(src.name)
    return Path(out_dir) / rel.with_suffix(f".{fmt}")


def export_model_file(model_file: str | os.PathLike, out: str | os.PathLike, fmt: str = "onnx",
                      allow: set[str] | frozenset[str] = frozenset()) -> dict:
    """Export the trained network of ``model_file`` to ``out``; returns what was done (paths, network, seconds).
    ``allow``: the code references the run's params name (:func:`~inloop.models.io.load_trained`).

    A missing or unreadable model file is one :class:`~inloop.models.io.ModelFileError` naming it.
    """
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt}: not one of {', '.join(FORMATS)}")
    net, payload = load_trained(model_file, allow=allow)
    meta = {"model_file": str(model_file), "network": payload["name"], "instance": payload.get("instance") or "",
            "kwargs": payload.get("kwargs") or {}, "bitdepth": payload.get("bitdepth"),
            "planes": payload.get("planes"), "describe": payload.get("describe") or {}}
    t0 = time.perf_counter()
    export_onnx(net, out, metadata=meta)
    return {"model_file": str(model_file), "out": str(out), "network": payload["name"],
            "clip": is_clip(net), "seconds": time.perf_counter() - t0}


def export_files(model_files: Iterable[str | os.PathLike], fmt: str = "onnx",
                 out_dir: str | os.PathLike | None = None, allow: set[str] | frozenset[str] = frozenset()) -> list[dict]:
    """Export every model file (beside each, or under ``out_dir`` keeping their relative paths); ``allow`` as in
    :func:`export_model_file`."""
    files = [Path(f) for f in model_files]
    common = Path(os.path.commonpath([str(f.resolve().parent) for f in files])) if files and out_dir else None
    return [export_model_file(f, default_output(f, fmt, out_dir, common), fmt, allow) for f in files]


def onnx_session(path: str | os.PathLike, threads: int | None = None, providers: list[str] | None = None):
    """An onnxruntime inference session of the ONNX file ``path`` (CPU unless ``providers`` say otherwise);
    ``threads``: intra-op threads (default onnxruntime's)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own Fail/InvalidProtobuf/NoSuchFile
        raise ExportError(f"{path}: onnxruntime cannot load it ({str(exc).strip().splitlines()[0]})") from None
