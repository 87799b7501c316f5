# Evaluate stage: anchor (filters on) vs filters off, and each trained network, on held-out clips.

ENC = P.ENCODE_FILES["stats"]


rule evaluate_codec:
    """Anchor with filters on vs the filters-off decode (no network)."""
    input:
        original=ORIG,
        anchor=ENC.replace("{filters}", "on"),
        off=ENC.replace("{filters}", NET_IN),
        lpips=LPIPS_STATUS,
    output:
        json=P.EVAL_CODEC,
    params:
        code=CODE["evaluate_codecs"],
        seq_class=lambda wc: ["--seq-class", _ctc_class(wc)] if _ctc_class(wc) else [],
    log:
        P.LOG["evaluate_codec"],
    benchmark:
        P.JOB_BENCH["evaluate_codec"]
    threads: RES["evaluate_codec"]["threads"]
    resources:
        mem_mb=RES["evaluate_codec"]["mem_mb"],
        runtime=RES["evaluate_codec"]["runtime_min"],
    conda:
        "../../envs/train.yaml"
    shell:
        "inloop evaluate --original {input.original:q} --anchor-stats {input.anchor:q} --off-stats {input.off:q}"
        " --out {output.json:q} --dataset {wildcards.dataset:q} {params.seq_class:q} --threads {threads:q}"
        " > {log:q} 2>&1"


rule evaluate_model:
    """A trained network applied to the filters-off decode (GL-Fusion IV: whole frames)."""
    input:
        original=ORIG,
        anchor=ENC.replace("{filters}", "on"),
        off=ENC.replace("{filters}", NET_IN),
        model=P.MODEL,
        baseline=_baseline,
        lpips=LPIPS_STATUS,
    output:
        json=P.EVAL_MODEL,
        enhanced=P.ENHANCED,
    log:
        P.LOG["evaluate_model"],
    benchmark:
        P.JOB_BENCH["evaluate_model"]
    threads: config["evaluate"].get("threads", 1)
    resources:
        mem_mb=config["evaluate"].get("mem_mb", 4000),
        runtime=config["evaluate"].get("runtime_min", 30),
        gpu=config.get("evaluate", {}).get("gpus", 0),
    params:
        baseline=lambda wc, input: ["--baseline", input.baseline] if input.baseline else [],
        seq_class=lambda wc: ["--seq-class", _ctc_class(wc)] if _ctc_class(wc) else [],
        code=CODE["evaluate"],
        switching=config["evaluate"].get("switching"),  # a change re-evaluates (not on the command line)
        compute=[config["evaluate"].get(k, False) for k in ("amp_bf16", "channels_last")],  # the same
    conda:
        "../../envs/train.yaml"
    shell:
        "inloop evaluate --original {input.original:q} --anchor-stats {input.anchor:q} --off-stats {input.off:q}"
        " --out {output.json:q} --dataset {wildcards.dataset:q} --model {input.model:q} --model-name {wildcards.model:q}"
        " --enhanced {output.enhanced:q}"
        " {params.baseline:q} {params.seq_class:q} --threads {threads:q}"
        " > {log:q} 2>&1"


rule codec_evaluations:
    """The codec alone: anchor vs filters off (`snakemake codec_evaluations`; DVC stage evaluate_codecs)."""
    input:
        codec_evals(),


rule evaluations:
    """Every network's evaluation, with the codec's it reuses (`snakemake evaluations`; DVC stage evaluate)."""
    input:
        codec_evals(),
        model_evals(),
