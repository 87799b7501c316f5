# Train stage: a patch store per (codec, configuration, QP), then one network per store.


rule patches:
    """(decoded, original) samples of the training clips; one store per store settings
    (patch size, temporal window...) shared by the models that use them."""
    input:
        unpack(_patch_inputs),
    output:
        **P.PATCH_FILES,
    wildcard_constraints:
        store=r"p\d+-t\d+-[0-9a-f]{6}",
    params:
        store=lambda wc, output: os.path.dirname(output.meta),
        model=lambda wc: STORE_MODEL[wc.store],
        settings=lambda wc: inloop.params.store_settings(SPECS[STORE_MODEL[wc.store]]),
        code=CODE["patches"],
    log:
        P.LOG["patches"],
    benchmark:
        P.JOB_BENCH["patches"]
    priority: 1  # the trainings wait for it
    threads: RES["patches"]["threads"]
    resources:
        mem_mb=RES["patches"]["mem_mb"],
        runtime=RES["patches"]["runtime_min"],
    conda:
        "../../envs/train.yaml"
    shell:
        "inloop patches --original {input.originals:q} --decoded {input.decoded:q} --stats {input.stats:q}"
        " --out {params.store:q}"
        " --model {params.model:q} > {log:q} 2>&1"


rule train:
    input:
        unpack(_store_files),
        manifests=lambda wc: manifests(TRAIN_DATASETS.get(wc.cfg, [])),
        lpips=LPIPS_STATUS,
        init=_train_init,
    output:
        model=P.MODEL,
        report=P.MODEL_REPORT,
    params:
        store=lambda wc, input: os.path.dirname(input.meta),
        # what the job computes: a change retrains, nothing else does
        computes=lambda wc: inloop.params.train_identity(SPECS[wc.model], KEEP_STATES[wc.model]),
        code=CODE["train"],
        launch=train_launcher(),
        init=_init_flags,
    log:
        P.LOG["train"],
    benchmark:
        P.JOB_BENCH["train"]
    priority: _train_priority
    # train.threads per training process; with train.gpus > 1 torchrun starts one process per GPU.
    threads: config["train"].get("threads", 2) * max(1, int(config["train"].get("gpus", 0) or 0))
    resources:
        mem_mb=config["train"].get("mem_mb", 4000),
        runtime=config["train"].get("runtime_min", 60),
        gpu=config["train"].get("gpus", 0),
    conda:
        "../../envs/train.yaml"
    shell:
        "{params.launch:q} train --model {wildcards.model:q} --store {params.store:q} --out {output.model:q}"
        " --codec {wildcards.codec:q} --config {wildcards.cfg:q} --qp {wildcards.qp:q}"
        " --manifest {input.manifests:q} --threads {threads:q} {params.init:q} > {log:q} 2>&1"


rule patch_stores:
    """Every patch store the networks of train.models train on (`snakemake patch_stores`; DVC stage patches)."""
    input:
        sorted({f"{store_dir(m, cfg, qp)}/meta.json" for m, cfg, qp in model_points()}),


rule models:
    """Every network of train.models at its configurations and QPs (`snakemake models`; DVC stage train)."""
    input:
        [model_file(m, cfg, qp) for m, cfg, qp in model_points()],
