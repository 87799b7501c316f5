# Train stage: a patch store per (codec, configuration, QP), then one network per store.


def _patch_inputs(wildcards):
    cl = train_clips(wildcards.cfg)
    if not cl:
        raise ValueError(f"no training clips for configuration {wildcards.cfg} "
                         "(params.yaml pipeline.train_datasets and datasets.demo.clips)")
    return {
        "originals": [original(ds, c) for ds, c in cl],
        "decoded": [decoded(ds, c, wildcards.cfg, "off", wildcards.qp) for ds, c in cl],
    }


rule patches:
    input:
        unpack(_patch_inputs),
    output:
        train="results/patches/{codec}/{cfg}/qp{qp}/train.npy",
        val="results/patches/{codec}/{cfg}/qp{qp}/val.npy",
        meta="results/patches/{codec}/{cfg}/qp{qp}/meta.json",
    params:
        store=lambda wc, output: os.path.dirname(output.meta),
        train=lambda wc: {k: config["train"].get(k) for k in ("patch_size", "patches_per_frame", "planes", "val_fraction", "val_sources", "seed", "max_frames_per_source")},
    log:
        "results/logs/patches/{codec}/{cfg}/qp{qp}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    shell:
        "inloop patches --original {input.originals} --decoded {input.decoded} --out {params.store} > {log} 2>&1"


def train_launcher():
    """`inloop`, or torchrun with one process per GPU of the job's allocation (DDP) when
    train.gpus > 1: under SLURM the job owns those GPUs, so a standalone rendezvous is enough."""
    gpus = int(config["train"].get("gpus", 0) or 0)
    if gpus > 1:
        return f"torchrun --standalone --nproc-per-node {gpus} -m inloop.cli"
    return "inloop"


rule train:
    input:
        meta="results/patches/{codec}/{cfg}/qp{qp}/meta.json",
        train="results/patches/{codec}/{cfg}/qp{qp}/train.npy",
        val="results/patches/{codec}/{cfg}/qp{qp}/val.npy",
        manifests=lambda wc: manifests(TRAIN_DATASETS.get(wc.cfg, [])),
    output:
        model="results/models/{model}/{codec}/{cfg}/qp{qp}/model.pt",
        report="results/models/{model}/{codec}/{cfg}/qp{qp}/model.json",
    params:
        store=lambda wc, input: os.path.dirname(input.meta),
        train=lambda wc: config["train"],
        model=lambda wc: (config.get("models") or {}).get(wc.model) or {},
        launch=train_launcher(),
    log:
        "results/logs/train/{model}/{codec}/{cfg}/qp{qp}.log",
    threads: config["train"].get("threads", 2)
    resources:
        mem_mb=config["train"].get("mem_mb", 4000),
        runtime=config["train"].get("runtime_min", 60),
        gpu=config["train"].get("gpus", 0),
    shell:
        "{params.launch} train --model {wildcards.model} --store {params.store} --out {output.model}"
        " --codec {wildcards.codec} --config {wildcards.cfg} --qp {wildcards.qp}"
        " --manifest {input.manifests} --threads {threads} > {log} 2>&1"
