"""The results tree and the stages: the one place that says where each stage writes and which
package code each stage runs (docs/design.md, "Layout").

Snakemake's rules (``workflow/rules/*.smk``) take these patterns with their wildcards as
inputs and outputs; the Snakefile's target lists and the CLI's defaults format them. The
dataset folder is ``datasets.out`` of params (default :data:`DATA`).
"""

from __future__ import annotations

RESULTS = "results"
DATA = f"{RESULTS}/data"  # datasets.out's default: every dataset's YUV files and manifest

# A clip's file stem: name, geometry (WxH_FPSfps_Nbit) and the 4:2:0 sampling (inloop.yuv's naming).
CLIP = "{name}_{geom}_420"
ORIGINAL = "{data}/{dataset}/" + CLIP + ".yuv"

# The encode stage: one encode per codec x configuration x loop filters x clip x QP.
ENCODED_DIR = f"{RESULTS}/encoded"
ENCODED = f"{ENCODED_DIR}/{{codec}}/{{cfg}}/{{filters}}/{{dataset}}/{CLIP}/qp{{qp}}"
ENCODE_FILES = {  # the encode rule's outputs
    "bitstream": ENCODED + ".bin",
    "decoded": ENCODED + "_{geom}_420.yuv",
    "stats": ENCODED + ".json",
    "codec_log": ENCODED + ".log",
}

# The patch stores and the trained networks (one per model x configuration x QP).
PATCHES = f"{RESULTS}/patches/{{codec}}/{{cfg}}/qp{{qp}}/{{store}}"
PATCH_FILES = {"train": f"{PATCHES}/train.npy", "val": f"{PATCHES}/val.npy", "meta": f"{PATCHES}/meta.json"}
MODELS = f"{RESULTS}/models"
MODEL = MODELS + "/{model}/{codec}/{cfg}/qp{qp}/model.pt"
MODEL_REPORT = MODELS + "/{model}/{codec}/{cfg}/qp{qp}/model.json"  # the training run's record

# The evaluations: the codec alone (anchor with filters on vs filters off: no network) and each
# trained network, apart, so that DVC versions them as two stages (a training change does not
# redo the codec's evaluations).
EVAL = f"{RESULTS}/eval"
EVAL_CODEC_DIR = f"{EVAL}/codec"
EVAL_MODELS_DIR = f"{EVAL}/models"
EVAL_CODEC = EVAL_CODEC_DIR + f"/{{codec}}/{{cfg}}/{{dataset}}/{CLIP}/qp{{qp}}.json"
EVAL_MODEL = EVAL_MODELS_DIR + f"/{{model}}/{{codec}}/{{cfg}}/{{dataset}}/{CLIP}/qp{{qp}}.json"
ENHANCED = f"{RESULTS}/enhanced/{{model}}/{{codec}}/{{cfg}}/{{dataset}}/{CLIP}/qp{{qp}}_{{geom}}_420.yuv"
# evaluate.jobs: per-qp -- one job evaluates every held-out clip of a dataset at one (network,) configuration and
# QP into a folder (the clip's stem: .json, .yuv); each clip's files above are then links to it. Not under EVAL:
# the report reads every qp*.json there, DVC versions EVAL's two folders.
EVAL_BATCH = f"{RESULTS}/eval-batch"
EVAL_CODEC_BATCH = EVAL_BATCH + "/codec/{codec}/{cfg}/{dataset}/qp{qp}"
EVAL_MODEL_BATCH = EVAL_BATCH + "/models/{model}/{codec}/{cfg}/{dataset}/qp{qp}"

REPORT = f"{RESULTS}/report"
REPORT_FILES = {"html": f"{REPORT}/index.html", "metrics": f"{REPORT}/metrics.json",
                "plots": f"{REPORT}/plots", "tables": f"{REPORT}/tables"}
LOGS = f"{RESULTS}/logs"
LOG = {  # each rule's log
    "data": f"{LOGS}/data/{{dataset}}.log",
    "check_splits": f"{LOGS}/data/check_splits.log",
    "lpips": f"{LOGS}/data/lpips.log",
    "encode": f"{LOGS}/encode/{{codec}}/{{cfg}}/{{filters}}/{{dataset}}/{CLIP}/qp{{qp}}.log",
    "patches": f"{LOGS}/patches/{{codec}}/{{cfg}}/qp{{qp}}/{{store}}.log",
    "train": f"{LOGS}/train/{{model}}/{{codec}}/{{cfg}}/qp{{qp}}.log",
    "evaluate_codec": f"{LOGS}/eval/codec/{{codec}}/{{cfg}}/{{dataset}}/{CLIP}/qp{{qp}}.log",
    "evaluate_model": f"{LOGS}/eval/models/{{model}}/{{codec}}/{{cfg}}/{{dataset}}/{CLIP}/qp{{qp}}.log",
    "evaluate_codec_batch": f"{LOGS}/eval/batch/codec/{{codec}}/{{cfg}}/{{dataset}}/qp{{qp}}.log",
    "evaluate_model_batch": f"{LOGS}/eval/batch/models/{{model}}/{{codec}}/{{cfg}}/{{dataset}}/qp{{qp}}.log",
    "report": f"{LOGS}/report.log",
}
JOB_BENCH_DIR = f"{RESULTS}/benchmarks"  # Snakemake's per-job measurements (wall time, peak memory)
JOB_BENCH = {rule: LOG[rule].replace(LOGS, f"{JOB_BENCH_DIR}/{rule}").replace(".log", ".tsv")
             for rule in ("encode", "patches", "train", "evaluate_codec", "evaluate_model", "evaluate_codec_batch",
                          "evaluate_model_batch")}
CACHE = f"{RESULTS}/cache"  # downloads ($INLOOP_CACHE overrides)
CHECKPOINTS = f"{RESULTS}/checkpoints"
MLFLOW_DB = f"{RESULTS}/mlflow.db"  # the default MLflow store (MLFLOW_TRACKING_URI overrides it)
BENCH = f"{RESULTS}/bench"  # `inloop bench` results and traces unless --out says otherwise
CHECKS = f"{RESULTS}/checks"  # the data stage's split check (beside, not in, the data folder DVC versions)

# Stage -> the package code behind it, as paths under src/inloop (files or folders). The rules
# pass a hash of it as a param (Snakemake reruns a job whose params changed), and dvc.yaml's
# stages list the same code as deps (tests/test_architecture.py keeps the two equal).
STAGE_CODE = {
    "data": ("datasets", "download.py", "yuv.py", "codecs/ffmpeg.py"),
    "encode": ("codecs", "bitstream.py", "yuv.py", "psnr.py"),
    "patches": ("training/patches.py", "yuv.py", "bitstream.py"),
    "train": ("training", "models", "yuv.py", "download.py"),
    "evaluate_codecs": ("evaluation", "models", "yuv.py", "psnr.py", "download.py", "bitstream.py"),
    "evaluate": ("evaluation", "models", "yuv.py", "psnr.py", "download.py", "bitstream.py"),
    "report": ("reporting", "evaluation", "yuv.py", "psnr.py"),
}


def fill(pattern: str, **fields) -> str:
    """A pattern with every wildcard given (``fill(MODEL, model=..., codec=..., cfg=..., qp=...)``)."""
    return pattern.format(**fields)
