"""params.yaml: the single source of truth for Snakemake, DVC and the CLI."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from .errors import ParamsError

DEFAULT_PARAMS = "params.yaml"
_MISSING = object()


def project_root() -> Path:
    """The project's checkout: the nearest folder at or above the working directory that holds a Snakefile and
    params.yaml, else the checkout this package is installed from (editable), else the working directory."""
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        if (d / "Snakefile").is_file() and (d / DEFAULT_PARAMS).is_file():
            return d
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "Snakefile").is_file() and (checkout / DEFAULT_PARAMS).is_file():
        return checkout
    return here


# libyaml's parser where PyYAML was built with it (the wheels are): the same safe loading, about ten times faster;
# every job of the workflow reads params and the schema once (0.18 s in pure Python, paid by 400-odd jobs).
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def yaml_load(text: str):
    """``yaml.safe_load`` with libyaml's parser when PyYAML has it."""
    return yaml.load(text, Loader=_YAML_LOADER)  # noqa: S506 - a safe loader


def load_params(path: str | os.PathLike | None = None) -> dict:
    """Load params.yaml (``path``, else ``$INLOOP_PARAMS``, else ./params.yaml)."""
    path = Path(path or os.environ.get("INLOOP_PARAMS", DEFAULT_PARAMS))
    if not path.is_file():
        raise ParamsError(f"params file {path} not found (run from the repository root or pass --params)")
    text = path.read_text()
    try:
        data = yaml_load(text) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: top level must be a mapping")
    if _is_resolved(path, text):  # the Snakefile checked it (complete) before writing it: each of ~280 jobs saves 85 ms
        return normalize(data)
    return check_params(normalize(data), str(path), complete=False)


SCHEMA = Path(__file__).with_name("params.schema.yaml")


def _schema() -> dict:
    global _SCHEMA_CACHE
    if _SCHEMA_CACHE is None:
        _SCHEMA_CACHE = yaml_load(SCHEMA.read_text())
    return _SCHEMA_CACHE


_SCHEMA_CACHE: dict | None = None


def _schema_error(err, prefix: str = "") -> str:
    """One line naming the key: ``train.stepz: unknown key; known: ...`` or ``train.steps: -5 is less than ...``."""
    where = ".".join(str(x) for x in (*([prefix] if prefix else []), *err.absolute_path))
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        known = list((err.schema.get("properties") or {}))
        pattern = list((err.schema.get("patternProperties") or {}))
        import re

        extra = sorted(k for k in err.instance if k not in known and not any(re.search(r, k) for r in pattern))
        if extra:
            key = f"{where}.{extra[0]}" if where else extra[0]
            known += [k for r in pattern for k in r.strip("^$").strip("()").split("|")]
            return f"{key}: unknown key; known: {', '.join(known)}"
    if err.validator == "pattern" and err.schema.get("description"):  # the schema says what the pattern means
        return f"{where}: {err.instance!r}: {err.schema['description']}"
    if err.validator == "propertyNames" and (err.schema.get("propertyNames") or {}).get("description"):
        return f"{where}.{err.instance!r}: {err.schema['propertyNames']['description']}"
    return f"{where or '(top level)'}: {err.message}"


# The most values a params tree may hold once YAML aliases are expanded: params.yaml and a paper config hold a
# few thousand; an alias bomb (a `billion laughs` under report.deviations) ran for minutes and ended in a
# MemoryError inside jsonschema.
MAX_VALUES = 200_000


def check_size(params: Any, source: str = "params", limit: int = MAX_VALUES) -> None:
    """Refuse a params tree that expands to more than ``limit`` values (counted as a walk would visit them,
    aliases included), in time bounded by ``limit``."""
    count, stack = 0, [params]
    while stack:
        node = stack.pop()
        count += 1
        if count > limit:
            raise ParamsError(f"{source}: expands to more than {limit} values (YAML anchors and aliases repeating "
                              "a block?); refusing to read it")
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)


def check_params(params: dict, source: str = "params", complete: bool = True, schema: dict | None = None,
                 prefix: str = "") -> dict:
    """Validate ``params`` against ``params.schema.yaml``; :class:`ParamsError` names ``source`` and the first bad
    key (unknown keys are refused at every level). ``complete=False`` (a CLI sub-command's ``--params``, which
    may leave sections at their defaults) does not ask for the required sections. Returns ``params``."""
    import jsonschema

    check_size(params, source)
    validator = jsonschema.Draft202012Validator(schema or _schema())
    errors = [e for e in validator.iter_errors(params) if complete or e.validator != "required"]
    if errors:
        err = min(errors, key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
        raise ParamsError(f"{source}: {_schema_error(err, prefix)}")
    return params


def check_models(params: dict, source: str = "params", names: list[str] | None = None, contract: bool = True) -> None:
    """Every ``train.models`` entry (or ``names``) checked before any job runs: its ``models.<name>`` block resolves
    (:func:`model_spec`: base, configs, qps, frames), its network exists and takes each setting, its train
    overrides are train settings of the schema (SPiLF's ``train.spilf`` block included).
    A network from outside this package (README, "Your own filter") is also run once on the CPU at the sizes
    it will meet (:func:`inloop.models.contract.check_contract`), unless ``contract`` is false."""
    from .models.registry import is_builtin, model_kwargs, network_class, unknown_kwargs

    _check_qps(params, source)
    train_schema = {**_schema()["properties"]["train"], "$defs": _schema()["$defs"]}  # its $refs resolve
    for name in (params.get("train") or {}).get("models") or [] if names is None else names:
        try:
            spec = model_spec(params, name)
            try:
                cls = network_class(spec["arch"])
            except ParamsError as exc:
                raise ParamsError(f"models.{name}.arch: {exc}") from None
            unknown = unknown_kwargs(spec["arch"], spec["kwargs"])
            if unknown:
                raise ParamsError(f"models.{name}.{unknown[0]}: not a parameter of {spec['arch']}; accepted: "
                                  f"{', '.join(model_kwargs(spec['arch']))}")
            check_params(spec["train"], f"models.{name}.train (merged over train)", schema=train_schema)
            net = _build_meta(name, spec)
            _check_tile(params, name, net)
            if contract and not is_builtin(cls):
                from .models.contract import check_contract, contract_sizes

                check_contract(name, spec["arch"], spec["kwargs"], spec["frames"],
                               contract_sizes(params, int(spec["train"].get("patch_size", 96))))
        except ParamsError as exc:
            raise ParamsError(f"{source}: {exc}") from None


def _check_qps(params: dict, source: str) -> None:
    """encode.qps and every trained model's qps within the configured codec's range (x265 and HM 0..51,
    VTM/ECM -12..63), before any job: QP 52 or -1 with x265 used to pass and fail in the encode."""
    from .codecs import CODECS

    enc = params.get("encode") or {}
    codec = CODECS.get(enc.get("codec"))
    if codec is None:
        return
    lo, hi = codec.qp_range
    keyed = [("encode.qps", q) for q in enc.get("qps") or []]
    for name in (params.get("train") or {}).get("models") or []:
        keyed += [(f"models.{name}.qps", q) for q in ((params.get("models") or {}).get(name) or {}).get("qps") or []]
    for key, qp in keyed:
        if isinstance(qp, int) and not lo <= qp <= hi:
            raise ParamsError(f"{source}: {key}: QP {qp} is outside {codec.name}'s range {lo}..{hi}")


# The most parameters a network may have (4 GB of fp32 weights): `channels: 100000000` tried to allocate
# 3.6e17 bytes in the train job instead of being refused when the workflow started.
MAX_PARAMETERS = 10**9


def _build_meta(name: str, spec: dict):
    """The network of ``models.<name>`` built on the meta device (shapes only, no memory): its settings'
    values are checked by its constructor, and its size against :data:`MAX_PARAMETERS`, before any job."""
    import torch

    from .models.registry import build_model

    try:
        with torch.device("meta"):
            net = build_model(spec["arch"], **spec["kwargs"])
    except ParamsError:
        raise
    except (TypeError, ValueError, RuntimeError, OverflowError) as exc:
        raise ParamsError(f"models.{name}: {spec['arch']} cannot be built with {spec['kwargs']} "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    n = sum(p.numel() for p in net.parameters())
    if n > MAX_PARAMETERS:
        raise ParamsError(f"models.{name}: {spec['arch']} with {spec['kwargs']} has {n:.3g} parameters, more than "
                          f"{MAX_PARAMETERS:.0e} ({4 * n / 2**30:.3g} GiB of weights); check the sizes")
    return net


def _check_tile(params: dict, name: str, net) -> None:
    """``evaluate.tile`` against the network it will cut: a multiple of its padding multiple (NL-ConvLSTM's
    pool, GL-Fusion's 2**hgf_depth), found before any job (the Yang config's tile 512 with pool 10 used to fail
    in every evaluation of a frame over 512 pixels)."""
    import math

    tile = (params.get("evaluate") or {}).get("tile")
    if not tile:
        return
    multiple = int(getattr(net, "pad_multiple", 1))
    if tile % multiple:
        fit = math.lcm(multiple, 16)
        raise ParamsError(f"evaluate.tile={tile} is not a multiple of models.{name}'s padding multiple {multiple}: "
                          f"use a multiple of {fit}, or null for whole frames")


def normalize(params: dict) -> dict:
    """Undo what YAML 1.1 writers do to the filter settings: ``encode.filters: [off, on]`` written unquoted
    (as ``dvc exp run -S`` rewrites params.yaml) reads as booleans; they mean ``"off"`` / ``"on"``."""
    enc = params.get("encode")
    if isinstance(enc, dict) and isinstance(enc.get("filters"), list):
        enc["filters"] = [("on" if f else "off") if isinstance(f, bool) else f for f in enc["filters"]]
    pipe = params.get("pipeline")
    if isinstance(pipe, dict) and isinstance(pipe.get("network_input"), bool):
        pipe["network_input"] = "on" if pipe["network_input"] else "off"
    return params


def cli_params(path: str | os.PathLike | None = None) -> dict:
    """What a CLI sub-command reads: ``--params``, else ``$INLOOP_PARAMS`` (set by the
    workflow to its merged configuration: params.yaml plus any ``--configfile``), else
    ./params.yaml, else nothing (``{}``: every setting at its default)."""
    if path or os.environ.get("INLOOP_PARAMS") or Path(DEFAULT_PARAMS).is_file():
        return load_params(path)
    return {}


def merge_configs(configs: list[str | os.PathLike], params_path: str | os.PathLike = DEFAULT_PARAMS) -> dict:
    """``params_path`` with each config merged over it in order, as Snakemake's ``--configfile a b`` merges them
    (mappings merged, anything else replaced), normalised; the one place this merge is spelled (apply_configs,
    ``inloop rehearse``, the cost plan). A config that is not a YAML mapping is one line naming it."""
    merged = load_params(params_path)
    for c in configs:
        try:
            over = yaml_load(Path(c).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ParamsError(f"{c}: cannot read it as YAML ({exc})") from None
        if not isinstance(over, dict):
            raise ParamsError(f"{c}: top level must be a mapping")
        merged = _deep_merge(merged, over)
    return normalize(merged)


def apply_configs(configs: list[str | os.PathLike], params_path: str | os.PathLike = DEFAULT_PARAMS) -> list[str]:
    """Write ``configs`` into ``params_path`` as Snakemake's ``--configfile`` merges them (mappings merged,
    anything else replaced), keeping the file's comments and layout: the one way to run ``dvc repro`` (which
    reads params.yaml only) with another configuration. The merged params are checked first (schema and
    models); a bad config leaves the file as it was. Returns the dotted keys whose value changed."""
    from ruamel.yaml import YAML

    from .fsutil import atomic_write

    path = Path(params_path)
    merged = merge_configs(configs, path)
    source = f"{path} with {', '.join(map(str, configs))}"
    check_params(merged, source)
    check_models(merged, source)

    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096
    rt.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    doc = rt.load(path.read_text())
    changed: list[str] = []

    def update(node, over: dict, prefix: str) -> None:
        for k, v in over.items():
            if isinstance(v, dict) and isinstance(node.get(k), dict):
                update(node[k], v, f"{prefix}{k}.")
            elif node.get(k, _MISSING) != v:
                node[k] = v
                changed.append(f"{prefix}{k}")

    for c in configs:  # the configs' own formatting (flow-style lists, comments) comes along
        update(doc, rt.load(Path(c).read_text()) or {}, "")
    with atomic_write(path, "w") as fh:
        rt.dump(doc, fh)
    return sorted(set(changed))


RESOLVED_HEADER = "# written by the workflow (workflow/rules/common.smk): params.yaml + --configfile/--config\n"


def _resolved_name(text: str) -> str:
    import hashlib

    return f"params-{hashlib.sha256(text.encode()).hexdigest()[:12]}.yaml"


def _is_resolved(path: Path, text: str) -> bool:
    """Whether ``path`` is a configuration :func:`write_resolved` wrote, unchanged since (its name is its
    contents' hash): the workflow checked it against the schema before writing it, so a job need not."""
    return text.startswith(RESOLVED_HEADER) and path.name == _resolved_name(text)


def write_resolved(config: dict, folder: str | os.PathLike) -> Path:
    """Write the workflow's merged configuration for the CLI: ``folder/params-{hash}.yaml``. The caller has
    checked it (the Snakefile: :func:`check_params`, :func:`check_models`); :func:`load_params` trusts such a
    file while its contents still match its name.

    One file per distinct configuration, so two Snakemake runs in one directory
    with different ``--configfile`` never read each other's settings; an existing
    file is left alone, so file times (which Snakemake and DVC look at) stay put.
    """
    from .fsutil import atomic_write

    text = RESOLVED_HEADER + yaml.safe_dump(config, sort_keys=True)
    path = Path(folder) / _resolved_name(text)
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


def source_hash(*parts: str) -> str:
    """A short hash of the package sources (paths under src/inloop) a workflow stage depends on.

    The rules take it as a param: Snakemake reruns a job whose params changed, so a
    change to the code behind a stage (a codec flag, a metric) reruns it and what
    follows, as a change to params.yaml does; Snakemake alone only sees rule code.
    """
    import hashlib

    root = Path(__file__).parent
    h = hashlib.sha256()
    for part in parts:
        path = root / part
        if not path.exists():
            raise FileNotFoundError(f"source_hash: {path} does not exist")
        for f in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            h.update(f.relative_to(root).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:12]


# Keys of a ``models.<name>`` block that describe the run, not the network's constructor.
MODEL_SPEC_KEYS = ("arch", "base", "configs", "qps", "train")


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _model_block(params: dict, name: str, chain: tuple[str, ...] = ()) -> dict:
    """``models.<name>``, with ``base``'s settings under it where it names one (recursively)."""
    models = params.get("models") or {}
    block = models.get(name)
    if block is None:
        block = {}
    if not isinstance(block, dict):
        raise ParamsError(f"models.{name}: expected a mapping of settings, got {block!r}")
    base = block.get("base")
    if base is None:
        return block
    if base == name or base in chain:
        raise ParamsError(f"models.{name}.base: {' -> '.join((*chain, name, base))} is a cycle")
    if base not in models:
        raise ParamsError(f"models.{name}.base: {base!r} is not an entry of models ({', '.join(models)})")
    parent = _model_block(params, base, (*chain, name))
    parent = {**parent, "arch": parent.get("arch", base)}
    return _deep_merge(parent, {k: v for k, v in block.items() if k != "base"})


def model_network(params: dict, name: str) -> dict:
    """The network of ``models.<name>`` alone: ``{arch, kwargs}`` (its ``base`` resolved), without the
    train / configs / qps checks of :func:`model_spec`: what a report of finished results needs."""
    return _network(_model_block(params, name), name)


def _network(block: dict, name: str) -> dict:
    return {"arch": block.get("arch", name), "kwargs": {k: v for k, v in block.items() if k not in MODEL_SPEC_KEYS}}


def model_spec(params: dict, name: str) -> dict:
    """What ``train.models`` entry ``name`` trains, from its ``models.<name>`` block.

    Besides the network's constructor keywords the block may hold ``arch`` (the
    registered network, default ``name``: two entries can share one network with
    different losses, as SPiLF's Arabica and ArabicaPerceptual do), ``base`` (another
    entry whose settings this one starts from: an ablation variant changes one switch
    of its base and keeps the base's sizes, whichever config set them), ``configs``
    and ``qps`` (default ``train.configs`` and ``encode.qps``) and ``train``
    (settings merged over the ``train`` section for this model only). Returns
    ``{name, arch, kwargs, train, configs, qps, frames}``; ``frames`` is the
    temporal window (the ``frames`` keyword of clip networks, else 1).
    """
    base, seed = split_seed(name)
    if seed and base in ((params.get("train") or {}).get("models") or []) and name not in (params.get("models") or {}):
        spec = model_spec(params, base)  # another seed of a train.models entry (train.seeds)
        return {**spec, "name": name, "train": {**spec["train"], "seed": int(seed)}}
    block = _model_block(params, name)
    overrides = block.get("train") or {}
    if not isinstance(overrides, dict):
        raise ParamsError(f"models.{name}.train: expected a mapping of train settings, got {overrides!r}")
    train = _deep_merge(params.get("train") or {}, overrides)
    configs = block.get("configs", train.get("configs") or ["ai"])
    qps = block.get("qps", (params.get("encode") or {}).get("qps") or [])
    for key, val in (("configs", configs), ("qps", qps)):
        if not isinstance(val, list) or not val:
            raise ParamsError(f"models.{name}.{key}: expected a non-empty list, got {val!r}")
    kwargs = _network(block, name)["kwargs"]
    frames = kwargs.get("frames", 1)
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1 or frames % 2 == 0:
        raise ParamsError(f"models.{name}.frames: expected an odd number of frames >= 1, got {frames!r}")
    return {"name": name, "arch": block.get("arch", name), "kwargs": kwargs, "train": train,
            "configs": list(configs), "qps": [int(q) for q in qps], "frames": frames}


# The train settings that say which jobs run and what they are given (the model list, the configurations,
# the seeds, the job's CPUs / GPUs / memory / time, where checkpoints go), not what one training computes.
JOB_KEYS = ("models", "configs", "seeds", "threads", "gpus", "mem_mb", "runtime_min", "checkpoint_dir")

SEED_SUFFIX = "-seed"


def model_instances(params: dict) -> list[str]:
    """The networks to train: each ``train.models`` entry once per ``train.seeds`` (default: one, ``train.seed``).
    The first seed keeps the entry's name; every other seed ``k`` is the instance ``<name>-seed<k>``, which
    :func:`model_spec` resolves to the entry with ``train.seed: k`` (the report's intervals then cover seeds)."""
    train = params.get("train") or {}
    seeds = train.get("seeds") or [train.get("seed", 0)]
    return [m if i == 0 else f"{m}{SEED_SUFFIX}{int(k)}" for m in train.get("models") or [] for i, k in enumerate(seeds)]


def lpips_measured(params: dict, model: str | None, config: str, qp: int) -> bool:
    """Whether the evaluation of ``model`` (None: the codec's own, anchor and filters-off decode) at ``config`` and
    ``qp`` measures LPIPS. ``metrics.lpips.evaluate: false``: none. ``metrics.lpips.models``: the ``train.models``
    entries (every seed) whose evaluations measure it, on their enhanced and switched decodes, and the codec's
    evaluations at their configurations and QPs (the anchor and filters-off curves SPiLF's Table 2 compares them
    with; a network's evaluation at such a point takes those two from the codec's); absent or null: every
    evaluation. LPIPS costs ~5 s of each evaluation of eight small clips on a 2-core CPU (docs/timings.md), and
    only SPiLF's table reads it."""
    lp = (params.get("metrics") or {}).get("lpips") or {}
    if not lp.get("evaluate", True):
        return False
    wanted = lp.get("models")
    if wanted is None:
        return True
    unknown = [m for m in wanted if m not in (params.get("models") or {})]
    if unknown:
        raise ParamsError(f"metrics.lpips.models: {unknown[0]} is not an entry of models:")
    if model is not None:
        return split_seed(model)[0] in wanted
    return any(config in spec["configs"] and int(qp) in spec["qps"]
               for spec in (model_spec(params, m) for m in model_instances(params) if split_seed(m)[0] in wanted))


def stage1_source(params: dict, name: str) -> str | None:
    """The model instance whose training is instance ``name``'s SPiLF stage 1 (``train.spilf.stage1_from``, the
    same seed: :func:`model_instances`), or None: none named, or the one named is not trained in this run (then
    the training runs its stage 1 itself, which gives the same model)."""
    source = ((model_spec(params, name)["train"].get("spilf") or {}).get("stage1_from"))
    if not source:
        return None
    seed = split_seed(name)[1]
    instance = f"{source}{SEED_SUFFIX}{seed}" if seed else str(source)
    return instance if instance in model_instances(params) else None


def stage1_handoffs(params: dict, name: str) -> list[int]:
    """The steps at which instance ``name``'s training keeps its state for the instances whose stage 1 it is."""
    return sorted({int(model_spec(params, m)["train"]["spilf"]["stage1_steps"]) for m in model_instances(params)
                   if stage1_source(params, m) == name})


def check_stage1_sources(params: dict) -> None:
    """``train.spilf.stage1_from`` of every trained model: another SPiLF entry of ``models:``, with
    ``stage1_steps`` set; else a ParamsError naming the key (the settings are compared when the job runs:
    :func:`inloop.training.spilf.stage1_mismatch`)."""
    for m in model_instances(params):
        spec = model_spec(params, m)
        source = (spec["train"].get("spilf") or {}).get("stage1_from")
        if not source:
            continue
        key = f"models.{split_seed(m)[0]}.train.spilf"
        if source == split_seed(m)[0] or source not in (params.get("models") or {}):
            raise ParamsError(f"{key}.stage1_from: {source} is {'the model itself' if source == split_seed(m)[0] else 'not an entry of models:'}")
        arch = model_spec(params, source)["arch"]
        if spec["arch"] != "spilf" or arch != "spilf":
            raise ParamsError(f"{key}.stage1_from: SPiLF's stage 1 continues only another SPiLF training "
                              f"({m}: {spec['arch']}, {source}: {arch})")
        if "stage1_steps" not in spec["train"]["spilf"]:
            raise ParamsError(f"{key}.stage1_steps: needed with stage1_from (the step this training continues from)")


def split_seed(name: str) -> tuple[str, str]:
    """``(entry, seed)`` of a model instance: ``("glfusion", "1")`` for ``glfusion-seed1``, ``(name, "")`` else."""
    base, sep, seed = str(name).rpartition(SEED_SUFFIX)
    return (base, seed) if sep and base and seed.isdigit() else (str(name), "")


def train_identity(spec: dict, keep_states: list[int] | tuple[int, ...] = ()) -> dict:
    """What one training job of a model spec (:func:`model_spec`) computes: its network (arch, settings,
    frames) and train settings without :data:`JOB_KEYS`. Snakemake reruns a training when this changes
    (rule train's params) and a checkpoint resumes only for an equal one: adding a model to
    ``train.models``, a QP to ``encode.qps`` or more threads retrains nothing that was trained.

    A network from outside this package adds ``source``, the hash of its code
    (:func:`inloop.models.registry.network_source`): editing it retrains that network and nothing else (this
    package's networks are in the train stage's code hash). ``keep_states``: the steps whose state the job keeps
    for other trainings (:func:`stage1_handoffs`), which its model file then holds."""
    from .models.registry import network_source

    identity = {"arch": spec["arch"], "kwargs": spec["kwargs"], "frames": spec["frames"],
                "train": {k: v for k, v in spec["train"].items() if k not in JOB_KEYS}}
    if keep_states:
        identity["keeps_states_at"] = sorted(int(k) for k in keep_states)
    source = network_source(spec["arch"])
    return identity if source is None else {**identity, "source": source}


# The train settings that decide what a patch store holds.
STORE_KEYS = ("patch_size", "patches_per_frame", "max_frames_per_source", "planes", "val_fraction", "val_sources",
              "seed")


def store_settings(spec: dict) -> dict:
    """The patch-store settings of a model spec (:func:`model_spec`)."""
    return {**{k: spec["train"].get(k) for k in STORE_KEYS}, "frames": spec["frames"]}


def store_key(spec: dict) -> str:
    """Directory name of the patch store a model trains on: models with equal store
    settings share one, e.g. ``p48-t1-3f2a9c`` (patch size, frames, settings hash)."""
    import hashlib
    import json

    s = store_settings(spec)
    digest = hashlib.sha256(json.dumps(s, sort_keys=True).encode()).hexdigest()[:6]
    return f"p{s['patch_size']}-t{s['frames']}-{digest}"
