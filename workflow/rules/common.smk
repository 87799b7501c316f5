# Shared definitions: wildcard patterns and the target lists derived from params.yaml.
import os
import sys

import inloop.datasets
import inloop.names
import inloop.download
import inloop.reporting.benchmarks

# Rules call `inloop`: use the one installed beside the Python running Snakemake
# (the project's .venv, or the cluster's conda env), whatever PATH the caller has.
# (os.environ.update: set here for the jobs, not required from the caller, so no envvars: directive)
os.environ.update(PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))

# ...and read the configuration this run uses (params.yaml merged with any --configfile or
# --config), not ./params.yaml alone: the merged config is written where every job sees it.
import inloop.params

PARAMS_RESOLVED = str(inloop.params.write_resolved(config, ".snakemake/inloop"))
os.environ.update(INLOOP_PARAMS=PARAMS_RESOLVED)


# More cores than the machine lets this process use only oversubscribe it: each job runs torch on the
# threads it is given, so --cores 8 on 2 CPUs runs four single-threaded jobs per CPU (docs/timings.md).
USABLE_CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
if workflow.local_exec and workflow.global_resources["_cores"].value not in (None, "all"):
    if int(workflow.global_resources["_cores"].value) > USABLE_CPUS:
        print(f"inloop: --cores {workflow.global_resources['_cores'].value} on a machine with {USABLE_CPUS} usable "
              f"CPUs oversubscribes them; --cores {USABLE_CPUS} (or --cores all) runs as fast with less "
              "contention", file=sys.stderr)

# A local run shares this machine's GPUs: without a limit Snakemake started as many GPU jobs (train.gpus,
# evaluate.gpus) as there are cores, all on one GPU (issue #28 item 12). Unless --resources gpu=N says otherwise,
# the limit is the GPUs nvidia-smi lists (at least 1: on a machine without one, the jobs that ask a GPU run on
# the CPU one at a time). Cluster executors are not limited here: each job asks its scheduler for its GPUs.
def _visible_gpus() -> int:
    """The GPUs this process may use, without importing torch: CUDA_VISIBLE_DEVICES if set, else nvidia-smi -L."""
    import shutil
    import subprocess

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() not in ("", "-1")])
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in out.splitlines())


if workflow.local_exec and "gpu" not in workflow.global_resources:
    workflow.register_resource("gpu", max(1, _visible_gpus()))


# Where each stage writes, and the package code behind each stage: inloop.paths, the one place.
import inloop.paths as P

# Hashes of the package code behind each stage, given to its rules as a param: Snakemake
# reruns a job whose params changed, so a code change reruns that stage and what follows.
CODE = {stage: inloop.params.source_hash(*files) for stage, files in P.STAGE_CODE.items()}
RES = config["resources"]  # what a job of each rule asks (params.yaml resources; train.* and evaluate.* for theirs)


wildcard_constraints:
    dataset=r"[A-Za-z0-9-]+",
    name=r"[A-Za-z0-9-]+",
    geom=r"\d+x\d+_[0-9.]+fps_\d+bit",
    codec="|".join(inloop.names.CODECS),
    cfg="|".join(inloop.names.CONFIGS),
    filters="|".join(inloop.names.FILTERS),
    qp=r"-?\d+",
    model=r"[a-z][a-z0-9-]*",


# The LPIPS weights, fetched once (rule lpips_weights) for SPiLF's loss and the LPIPS columns, where
# inloop.models.lpips.cache_dir keeps them: metrics.lpips.cache_dir, else lpips/ in the download cache
# (inloop.download.cache_dir: $INLOOP_CACHE, else datasets.cache, else results/cache).
LPIPS_STATUS = os.path.join(((config.get("metrics") or {}).get("lpips") or {}).get("cache_dir")
                            or os.path.join(inloop.download.cache_dir(config), "lpips"), "status.json")

# Where every dataset's YUV files and manifest live (datasets.out): the one place that says so.
DATA_OUT = config.get("datasets", {}).get("out", P.DATA)
CODEC = config["encode"]["codec"]
ORIG = P.ORIGINAL.replace("{data}", DATA_OUT)  # a clip's original, with wildcards

# Which datasets train which configuration, which are held out, the manifest splits that train, and
# the decode the networks filter (params.yaml `pipeline`).
PIPELINE = config["pipeline"]
TRAIN_DATASETS = PIPELINE.get("train_datasets") or {cfg: ["demo"] for cfg in inloop.names.CONFIGS}
TEST_DATASETS = PIPELINE["test_datasets"]
TRAIN_SPLITS = PIPELINE["train_splits"]
NET_IN = PIPELINE["network_input"]
DATASETS = sorted({ds for v in TRAIN_DATASETS.values() for ds in v} | set(TEST_DATASETS))


def clips(dataset="demo", split=None):
    """The clips of a dataset: the demo from params.yaml (no file read), others from their manifest."""
    return [c for c in inloop.datasets.clips(config, dataset) if split is None or c.split == split]


def encode_configs(clip):
    """Images are coded all-intra only; videos in every configuration of params."""
    cfgs = config["encode"]["configs"]
    return [c for c in cfgs if c == "ai"] if clip.frames == 1 else cfgs


def encode_frames(cfg, clip_frames):
    """Frames to encode: params' encode.frames.<cfg>, at most the clip's length."""
    return min(int(config["encode"]["frames"][cfg]), clip_frames)


def _clip_fields(dataset, clip):
    """The wildcards of a clip's files: dataset, name and geometry."""
    return {"dataset": dataset, "name": clip.name, "geom": clip.stem[len(clip.name) + 1 : -len("_420")]}


def encoded(dataset, clip, cfg, filters, qp, kind="stats"):
    return P.fill(P.ENCODE_FILES[kind], codec=CODEC, cfg=cfg, filters=filters, qp=qp, **_clip_fields(dataset, clip))


def all_encodes():
    """The encodes `all` needs, no more: every held-out clip in its configurations, filters off and on, at
    encode.qps and the models' QPs (the evaluations); every training clip only where a network trains on it
    (its configurations and QPs, the decode the network takes: pipeline.network_input)."""
    out = {
        encoded(ds, clip, cfg, filters, qp)
        for ds in TEST_DATASETS
        for clip in test_clips(ds)
        for cfg in encode_configs(clip)
        for filters in config["encode"]["filters"]
        for qp in encode_qps(cfg)
    }
    out |= {encoded(ds, clip, cfg, NET_IN, qp) for _, cfg, qp in model_points() for ds, clip in train_clips(cfg)}
    return sorted(out)


# ---------------------------------------------------------------- training and evaluation targets


def original(dataset, clip):
    return P.fill(P.ORIGINAL, data=DATA_OUT, **_clip_fields(dataset, clip))


def decoded(dataset, clip, cfg, filters, qp):
    return encoded(dataset, clip, cfg, filters, qp, "decoded")


def train_clips(cfg):
    """(dataset, clip) training sources of a configuration: images for AI only, videos for any."""
    return [(ds, c) for ds in TRAIN_DATASETS.get(cfg, []) for c in clips(ds) if c.split in TRAIN_SPLITS
            and cfg in encode_configs(c)]


def test_clips(dataset):
    return clips(dataset, "test")


def manifests(datasets):
    return [f"{DATA_OUT}/{ds}/manifest.json" for ds in sorted(set(datasets))]


def trained_models():
    """train.models, each once per train.seeds (inloop.params.model_instances)."""
    return inloop.params.model_instances(config)


# Each train.models entry: its network (arch), configurations, QPs, merged train settings and
# the patch store it trains on (inloop.params.model_spec; SPiLF and NL-ConvLSTM train at
# other QPs and configurations than GL-Fusion).
SPECS = {m: inloop.params.model_spec(config, m) for m in trained_models()}
for _m, _s in SPECS.items():
    for _cfg in _s["configs"]:
        if _cfg not in config["encode"]["configs"]:
            raise ValueError(f"models.{_m}.configs: {_cfg} is not in encode.configs {config['encode']['configs']}")
    _warm = _s["train"].get("warm_start")
    if _warm and _warm["qp"] not in _s["qps"]:
        raise ValueError(f"models.{_m}.train.warm_start.qp: {_warm['qp']} is not one of the model's QPs {_s['qps']}")
inloop.params.check_stage1_sources(config)
# SPiLF models whose stage 1 is another model's training (train.spilf.stage1_from), and the steps at which each
# model's training keeps its state for them.
STAGE1_FROM = {m: inloop.params.stage1_source(config, m) for m in SPECS}
KEEP_STATES = {m: inloop.params.stage1_handoffs(config, m) for m in SPECS}
# One patch store per distinct store settings; the first model naming it describes it.
STORE_MODEL = {}
for _m, _s in SPECS.items():
    STORE_MODEL.setdefault(inloop.params.store_key(_s), _m)


def model_points():
    """(model, configuration, QP) of every network to train."""
    return [(m, cfg, qp) for m, s in SPECS.items() for cfg in s["configs"] for qp in s["qps"]]


def encode_qps(cfg):
    """encode.qps, plus the QPs of the models trained in this configuration."""
    return sorted(set(config["encode"]["qps"]) | {qp for m, c, qp in model_points() if c == cfg})


def store_dir(model, cfg, qp):
    return P.fill(P.PATCHES, codec=CODEC, cfg=cfg, qp=qp, store=inloop.params.store_key(SPECS[model]))


def model_file(model, cfg, qp):
    return P.fill(P.MODEL, model=model, codec=CODEC, cfg=cfg, qp=qp)


def codec_evals():
    """The codec alone (anchor vs filters off) at encode.qps, on every held-out clip."""
    return [P.fill(P.EVAL_CODEC, codec=CODEC, cfg=cfg, qp=qp, **_clip_fields(ds, clip))
            for ds in TEST_DATASETS for clip in test_clips(ds)
            for cfg in encode_configs(clip) for qp in config["encode"]["qps"]]


def model_evals():
    """Every trained model at its configurations and QPs, on every held-out clip."""
    return [P.fill(P.EVAL_MODEL, model=m, codec=CODEC, cfg=cfg, qp=qp, **_clip_fields(ds, clip))
            for ds in TEST_DATASETS for clip in test_clips(ds)
            for m, cfg, qp in model_points() if cfg in encode_configs(clip)]


# ---------------------------------------------------------------- input functions of the stages' rules
# (`snakemake --lint`: functions live here, rules in workflow/rules/<stage>.smk)

# data.smk
SPLITS_CHECK = f"{P.CHECKS}/splits.json"  # not under DATA_OUT: DVC versions that folder as the data stage's output
TRAIN_MANIFESTS = sorted({ds for v in TRAIN_DATASETS.values() for ds in v})
DEMO_CLIPS = inloop.datasets.clips(config, "demo")


def demo_yuv(split=None, kind=None):
    """Paths of the demo clips' YUV files, optionally one split / kind."""
    return [f"{DATA_OUT}/demo/{c.stem}.yuv" for c in DEMO_CLIPS
            if (split is None or c.split == split) and (kind is None or c.kind == kind)]


# codec.smk
def _ctc_class(wildcards):
    """A held-out clip's CTC class (A-F) for the report's class rows (GL-Fusion Tables II-VI), else empty."""
    return _clip_class(_clip(wildcards))


def _clip_class(clip):
    return clip.cls if clip.cls in ("A", "B", "C", "D", "E", "F") else ""


def _clip(wildcards):
    """The clip an encode job's wildcards name."""
    stem = f"{wildcards.name}_{wildcards.geom}_420"
    for clip in clips(wildcards.dataset):
        if clip.stem == stem:
            return clip
    raise ValueError(f"no clip {stem} in dataset {wildcards.dataset} (params.yaml datasets.{wildcards.dataset})")


def _encode_priority(wildcards):
    """Training clips' encodes before the held-out clips': the patch stores, then the trainings (the long
    jobs) wait for them, the evaluations only for the trainings. Held-out clips' encodes at a point where a
    multi-frame network is evaluated go first too: that evaluation starts as soon as its model is trained
    (:func:`_evaluate_priority`) only if its inputs are there."""
    return int(_clip(wildcards).split in TRAIN_SPLITS or _multi_frame_point(wildcards.cfg, wildcards.qp))


def _clip_frames(wildcards):
    return encode_frames(wildcards.cfg, _clip(wildcards).frames)


# train.smk
def _patch_inputs(wildcards):
    cl = train_clips(wildcards.cfg)
    if not cl:
        raise ValueError(f"no training clips for configuration {wildcards.cfg} "
                         "(params.yaml pipeline.train_datasets and datasets.demo.clips)")
    return {
        "originals": [original(ds, c) for ds, c in cl],
        "decoded": [decoded(ds, c, wildcards.cfg, NET_IN, wildcards.qp) for ds, c in cl],
        "stats": [encoded(ds, c, wildcards.cfg, NET_IN, wildcards.qp, "stats") for ds, c in cl],
        "splits": SPLITS_CHECK,
    }


def train_launcher():
    """`inloop`, or torchrun with one process per GPU of the job's allocation (DDP) when
    train.gpus > 1: under SLURM the job owns those GPUs, so a standalone rendezvous is enough."""
    gpus = int(config["train"].get("gpus", 0) or 0)
    if gpus > 1:
        return ["torchrun", "--standalone", "--nproc-per-node", str(gpus), "-m", "inloop.cli"]
    return ["inloop"]


def _store_files(wc):
    if wc.model not in SPECS:
        raise ValueError(f"{wc.model} is not in train.models {list(SPECS)}")
    d = store_dir(wc.model, wc.cfg, wc.qp)
    return {"meta": f"{d}/meta.json", "train": f"{d}/train.npy", "val": f"{d}/val.npy"}


def _warm(wc):
    """The model's ``train.warm_start`` ({qp, steps}) or None."""
    return SPECS[wc.model]["train"].get("warm_start") if wc.model in SPECS else None


def _train_priority(wc):
    """Warm-start and stage-1 sources first (other trainings wait for them: the longest chains), then the other
    trainings, then the shorter jobs, when more jobs are ready than cores."""
    warm = _warm(wc)
    source = (warm and int(wc.qp) == int(warm["qp"])) or KEEP_STATES.get(wc.model)
    return 2 if source else 1


def _train_init(wc):
    """The model file a training starts from: the same model's at ``train.warm_start.qp`` (a warm start), or
    the model whose training is its SPiLF stage 1 (``train.spilf.stage1_from``) at the same QP."""
    source = STAGE1_FROM.get(wc.model)
    if source and wc.cfg in SPECS[source]["configs"] and int(wc.qp) in SPECS[source]["qps"]:
        return model_file(source, wc.cfg, wc.qp)
    warm = _warm(wc)
    if not warm or int(wc.qp) == int(warm["qp"]):
        return []
    return model_file(wc.model, wc.cfg, warm["qp"])


def _init_flags(wc, input):
    """``inloop train``'s flags for the file :func:`_train_init` gives."""
    if not input.init:
        return []
    source = STAGE1_FROM.get(wc.model)
    stage1 = source and str(input.init) == model_file(source, wc.cfg, wc.qp)
    return ["--stage1-from" if stage1 else "--init-from", input.init]


# evaluate.smk
EVAL_PER_QP = config["evaluate"].get("jobs", "per-clip") == "per-qp"


def _batch_clips(wc):
    """The clips of an evaluate_*_batch job: the dataset's held-out clips coded in the configuration."""
    return [c for c in test_clips(wc.dataset) if wc.cfg in encode_configs(c)]


def _batch_points(wc):
    """Each clip's wildcards in a batch job."""
    return [{**dict(wc.items()), **_clip_fields(wc.dataset, c)} for c in _batch_clips(wc)]


def _batch_file(wc, folder, suffix):
    """A clip's file in its batch folder: the clip's stem (name, geometry: a YUV's format) and ``suffix``."""
    return f"{folder}/{wc.name}_{wc.geom}_420{suffix}"


def _batch_files(wc, folder, suffix):
    return [f"{folder}/{c.stem}{suffix}" for c in _batch_clips(wc)]


def _batch_note(wc, folder, rule):
    """A linked clip's log line: where its evaluation ran and logged."""
    return (f"evaluate.jobs: per-qp -- evaluated with the other clips of {folder} (rule {rule}); "
            f"its log: {P.fill(P.LOG[rule], **dict(wc.items()))}")


def _batch_classes(wc):
    """--seq-class with each clip's CTC class ("-": none; a quoted empty string would vanish), or nothing."""
    cls = [_clip_class(c) for c in _batch_clips(wc)]
    return ["--seq-class", *[c or "-" for c in cls]] if any(cls) else []


def _codec_batch_inputs(wc):
    pts = _batch_points(wc)
    stats = P.ENCODE_FILES["stats"]
    return {"original": [P.fill(ORIG, **f) for f in pts],
            "anchor": [P.fill(stats.replace("{filters}", "on"), **f) for f in pts],
            "off": [P.fill(stats.replace("{filters}", NET_IN), **f) for f in pts]}


def _multi_frame_point(cfg, qp):
    """Whether a multi-frame network (``frames`` > 1) is trained, and so evaluated, at this configuration and QP."""
    return any(SPECS[m]["frames"] > 1 and c == cfg and int(q) == int(qp) for m, c, q in model_points())


def _evaluate_priority(wc):
    """A multi-frame network's evaluation as soon as its model is trained, before the other trainings (2, as the
    warm-start sources): each of its frames is filtered from a window of T frames (NL-ConvLSTM's took 3-4x a
    single-frame network's in the demo), and started last one ran alone at the end of the run while the other
    core idled (docs/timings.md). Its inputs go early with it (:func:`_encode_priority`,
    :func:`_codec_eval_priority`, :data:`LINK_PRIORITY`)."""
    return 2 if wc.model in SPECS and SPECS[wc.model]["frames"] > 1 else 0


def _lpips_flag(wc):
    """--no-lpips where params metrics.lpips.models leaves LPIPS out (:func:`inloop.params.lpips_measured`); on the
    command line, so a change of that list evaluates again."""
    return [] if inloop.params.lpips_measured(config, getattr(wc, "model", None), wc.cfg, wc.qp) else ["--no-lpips"]


def _codec_eval_priority(wc):
    """The codec's evaluation at a multi-frame network's point with that network's (its evaluation reads it as
    the baseline); elsewhere after the trainings."""
    return 2 if _multi_frame_point(wc.cfg, wc.qp) else 0


# evaluate.jobs per-qp: a clip's evaluate_codec / evaluate_model job only links its files from the batch folder
# (no computation); before anything else, so a batch's results reach the jobs that wait for them at once (in the
# demo of 2026-12-07 NL-ConvLSTM's QP 37 evaluation got its last two links 65 s after their batch had finished).
LINK_PRIORITY = 3


def _model_batch_inputs(wc):
    """The codec batch's inputs, and each clip's codec evaluation where it has one (:func:`_baseline`)."""
    has = int(wc.qp) in config["encode"]["qps"]
    return {**_codec_batch_inputs(wc), "baseline": [P.fill(P.EVAL_CODEC, **f) for f in _batch_points(wc)] if has else []}


def _baseline(wc):
    """The model-'none' evaluation of this point, reused for anchor and decode (only encode.qps have one)."""
    if int(wc.qp) not in config["encode"]["qps"]:
        return []
    return P.fill(P.EVAL_CODEC, **dict(wc.items()))


# report.smk
def _model_reports(wildcards=None):
    return [P.fill(P.MODEL_REPORT, model=m, codec=CODEC, cfg=cfg, qp=qp) for m, cfg, qp in model_points()]


def _benchmark_files(wildcards=None):
    """The `inloop bench` results of report.benchmarks that exist: changing one reruns the
    report; a listed file that does not exist is no input (the report says how to make it)."""
    return inloop.reporting.benchmarks.existing_files(config)
