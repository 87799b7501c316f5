"""Model and checkpoint files: atomic ``torch.save``, checked ``torch.load``, and rebuilding a
trained network from its model file (what evaluation, bench and export load)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from ..errors import InloopError
from ..fsutil import atomic_path
from .registry import build_model, is_reference


class ModelFileError(InloopError, RuntimeError):
    """A model or checkpoint file that cannot be written or read."""


def torch_save(obj, path: Path, what: str) -> None:
    """``torch.save`` to ``path`` atomically; a failure (a full disk, an unwritable folder) is one
    :class:`ModelFileError` naming the file, and the previous file stays as it was."""
    try:
        with atomic_path(path) as tmp:
            torch.save(obj, tmp)
    except (OSError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: could not write the {what} ({str(exc).splitlines()[0]})") from None


def torch_load(path: Path, what: str, map_location="cpu") -> dict:
    """``torch.load`` of a project file (a checkpoint or a model, written by :func:`torch_save`); a truncated,
    empty or foreign file is one :class:`ModelFileError` naming it and what to do.

    Model files travel between people (the DVC remote, MLflow artifacts), so they are read with
    ``weights_only=True``: PyTorch's restricted unpickler, which builds tensors, containers and plain
    numbers and strings only. A file whose pickle calls anything else (``os.system`` in an object's
    ``__reduce__``, say) is refused before that call runs (docs/reliability.md, "code in a model file").
    Everything inloop writes (state dicts, optimiser states, numpy's bit-generator state as a dict of
    ints, histories) is of those types.
    """
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # The restricted unpickler's refusal: the message names the global the file wanted to call.
        why = next((line.strip() for line in str(exc).splitlines()
                    if "GLOBAL" in line or "Unsupported" in line), "")
        raise ModelFileError(f"{path}: refused: the {what} holds code or objects that are not tensors "
                             f"or plain data ({why or 'restricted unpickler'}); nothing from it was run. "
                             "Use a file written by inloop") from None
    except Exception as exc:  # noqa: BLE001 - zip and EOF errors all mean "unreadable"
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ModelFileError(f"{path}: unreadable {what} ({type(exc).__name__}: {why}); "
                             "delete it and run again") from None
    if not isinstance(obj, dict):
        raise ModelFileError(f"{path}: not a {what} written by inloop; delete it and run again")
    return obj


def configured_references(params: dict | None) -> set[str]:
    """The code references (``package.module:Class``, ``file.py:Class``) that ``params`` names as networks
    (``models.*.arch``): what a caller holding the run's params passes to :func:`load_trained` as ``allow``."""
    blocks = (params or {}).get("models") or {}
    return {b["arch"] for b in blocks.values() if isinstance(b, dict) and is_reference(b.get("arch"))}


def load_trained(path: str | os.PathLike, device: str | torch.device = "cpu",
                 allow: set[str] | frozenset[str] = frozenset()) -> tuple[torch.nn.Module, dict]:
    """Rebuild a trained network from its model file; returns ``(model in eval mode, payload)``.

    The file names its network. A name of this package's or an installed entry point is built as is; a code
    reference (``package.module:Class``, ``file.py:Class``) only if the user's params name it too (``allow``:
    :func:`configured_references` of the run's params; default none): importing is running code, and a model file must not choose which
    (docs/reliability.md, "code in a model file")."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} not found; run the train stage first")
    payload = torch_load(path, "model file", map_location=device)
    arch = payload.get("name")
    if is_reference(arch) and arch not in allow:
        raise ModelFileError(f"{path}: refused: the file names the network {arch!r}, code that no models.*.arch of "
                             "these params names; nothing was imported. Name it in params to load it")
    model = build_model(arch, **payload["kwargs"])
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval(), payload
