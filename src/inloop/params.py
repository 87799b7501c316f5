"""params.yaml: the single source of truth for Snakemake, DVC and the CLI."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from .errors import ParamsError

DEFAULT_PARAMS = "params.yaml"
_MISSING = object()


def load_params(path: str | os.PathLike | None = None) -> dict:
    """Load params.yaml (``path``, else ``$INLOOP_PARAMS``, else ./params.yaml)."""
    path = Path(path or os.environ.get("INLOOP_PARAMS", DEFAULT_PARAMS))
    if not path.is_file():
        raise ParamsError(f"params file {path} not found (run from the repository root or pass --params)")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: top level must be a mapping")
    return data


def cli_params(path: str | os.PathLike | None = None) -> dict:
    """What a CLI sub-command reads: ``--params``, else ``$INLOOP_PARAMS`` (set by the
    workflow to its merged configuration: params.yaml plus any ``--configfile``), else
    ./params.yaml, else nothing (``{}``: every setting at its default)."""
    if path or os.environ.get("INLOOP_PARAMS") or Path(DEFAULT_PARAMS).is_file():
        return load_params(path)
    return {}


def write_resolved(config: dict, path: str | os.PathLike) -> Path:
    """Write the workflow's merged configuration for the CLI; rewritten only when it
    changed, so file times (which Snakemake and DVC look at) stay put."""
    from .fsutil import atomic_write

    path = Path(path)
    text = "# written by the workflow (workflow/rules/common.smk): params.yaml + --configfile/--config\n" + \
        yaml.safe_dump(config, sort_keys=True)
    if not (path.is_file() and path.read_text() == text):
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "w") as f:
            f.write(text)
    return path.resolve()


def get(params: dict, dotted: str, default: Any = _MISSING) -> Any:
    """``get(p, "codecs.x265.preset")``; a missing key without default names the key."""
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            if default is _MISSING:
                raise ParamsError(f"params key {dotted!r} is missing")
            return default
        node = node[part]
    return node
