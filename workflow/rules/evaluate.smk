# Evaluate stage: anchor (filters on) vs filters off, and each trained network, on held-out clips.
#
# params evaluate.jobs: per-clip -- rules evaluate_codec / evaluate_model run one job per clip and QP (what a
# cluster runs side by side); per-qp -- rules evaluate_codec_batch / evaluate_model_batch run one job per (network,)
# configuration, QP and dataset over all its held-out clips, into a folder, and evaluate_codec / evaluate_model only
# link each clip's files from it (local jobs, no computation): Python and torch start once per folder instead of
# once per clip, about 2 s of each 3-5 s job on a 2-core CPU (docs/timings.md). The results are the same files.

ENC = P.ENCODE_FILES["stats"]


rule evaluate_codec_batch:
    """evaluate.jobs: per-qp -- the codec alone on every held-out clip of a dataset at one configuration and QP."""
    input:
        unpack(_codec_batch_inputs),
        lpips=LPIPS_STATUS,
    output:
        folder=directory(P.EVAL_CODEC_BATCH),
    params:
        code=CODE["evaluate_codecs"],
        outs=lambda wc, output: _batch_files(wc, output.folder, ".json"),
        seq_class=_batch_classes,
        lpips=_lpips_flag,
    log:
        P.LOG["evaluate_codec_batch"],
    benchmark:
        P.JOB_BENCH["evaluate_codec_batch"]
    priority: _codec_eval_priority
    threads: RES["evaluate_codec"]["threads"]
    resources:
        mem_mb=RES["evaluate_codec"]["mem_mb"],
        runtime=lambda wc: RES["evaluate_codec"]["runtime_min"] * len(_batch_clips(wc)),
    conda:
        "../../envs/train.yaml"
    shell:
        "inloop evaluate --original {input.original:q} --anchor-stats {input.anchor:q} --off-stats {input.off:q}"
        " --out {params.outs:q} --dataset {wildcards.dataset:q} {params.seq_class:q} {params.lpips:q} --threads {threads:q}"
        " > {log:q} 2>&1"


rule evaluate_model_batch:
    """evaluate.jobs: per-qp -- a trained network on every held-out clip of a dataset at one configuration and QP."""
    input:
        unpack(_model_batch_inputs),
        model=P.MODEL,
        lpips=LPIPS_STATUS,
    output:
        folder=directory(P.EVAL_MODEL_BATCH),
    params:
        code=CODE["evaluate"],
        outs=lambda wc, output: _batch_files(wc, output.folder, ".json"),
        enhanced=lambda wc, output: _batch_files(wc, output.folder, ".yuv"),
        baseline=lambda wc, input: ["--baseline", *input.baseline] if input.baseline else [],
        seq_class=_batch_classes,
        lpips=_lpips_flag,
        switching=config["evaluate"].get("switching"),  # a change re-evaluates (not on the command line)
        compute=[config["evaluate"].get(k, False) for k in ("amp_bf16", "channels_last")],  # the same
    log:
        P.LOG["evaluate_model_batch"],
    benchmark:
        P.JOB_BENCH["evaluate_model_batch"]
    threads: config["evaluate"].get("threads", 1)
    priority: _evaluate_priority
    resources:
        mem_mb=config["evaluate"].get("mem_mb", 4000),
        runtime=lambda wc: config["evaluate"].get("runtime_min", 30) * len(_batch_clips(wc)),
        gpu=config.get("evaluate", {}).get("gpus", 0),
    conda:
        "../../envs/train.yaml"
    shell:
        "inloop evaluate --original {input.original:q} --anchor-stats {input.anchor:q} --off-stats {input.off:q}"
        " --out {params.outs:q} --dataset {wildcards.dataset:q} --model {input.model:q} --model-name {wildcards.model:q}"
        " --enhanced {params.enhanced:q} {params.baseline:q} {params.seq_class:q} {params.lpips:q} --threads {threads:q}"
        " > {log:q} 2>&1"


if EVAL_PER_QP:

    rule evaluate_codec:
        """A clip's codec evaluation, linked from its evaluate_codec_batch folder."""
        localrule: True
        priority: LINK_PRIORITY
        input:
            folder=P.EVAL_CODEC_BATCH,
        output:
            json=P.EVAL_CODEC,
        params:
            json=lambda wc, input: _batch_file(wc, input.folder, ".json"),
            note=lambda wc, input: _batch_note(wc, input.folder, "evaluate_codec_batch"),
        log:
            P.LOG["evaluate_codec"],
        conda:
            "../../envs/train.yaml"
        shell:
            "{{ ln -f {params.json:q} {output.json:q} 2>/dev/null || cp {params.json:q} {output.json:q}; }}"
            " && touch {output.json:q} && echo {params.note:q} > {log:q}"

    rule evaluate_model:
        """A clip's network evaluation and enhanced decode, linked from its evaluate_model_batch folder."""
        localrule: True
        priority: LINK_PRIORITY
        input:
            folder=P.EVAL_MODEL_BATCH,
        output:
            json=P.EVAL_MODEL,
            enhanced=P.ENHANCED,
        params:
            json=lambda wc, input: _batch_file(wc, input.folder, ".json"),
            enhanced=lambda wc, input: _batch_file(wc, input.folder, ".yuv"),
            note=lambda wc, input: _batch_note(wc, input.folder, "evaluate_model_batch"),
        log:
            P.LOG["evaluate_model"],
        conda:
            "../../envs/train.yaml"
        shell:
            "{{ ln -f {params.json:q} {output.json:q} 2>/dev/null || cp {params.json:q} {output.json:q}; }}"
            " && {{ ln -f {params.enhanced:q} {output.enhanced:q} 2>/dev/null || cp {params.enhanced:q} {output.enhanced:q}; }}"
            " && touch {output.json:q} {output.enhanced:q} && echo {params.note:q} > {log:q}"

else:

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
            lpips=_lpips_flag,
        log:
            P.LOG["evaluate_codec"],
        benchmark:
            P.JOB_BENCH["evaluate_codec"]
        priority: _codec_eval_priority
        threads: RES["evaluate_codec"]["threads"]
        resources:
            mem_mb=RES["evaluate_codec"]["mem_mb"],
            runtime=RES["evaluate_codec"]["runtime_min"],
        conda:
            "../../envs/train.yaml"
        shell:
            "inloop evaluate --original {input.original:q} --anchor-stats {input.anchor:q} --off-stats {input.off:q}"
            " --out {output.json:q} --dataset {wildcards.dataset:q} {params.seq_class:q} {params.lpips:q} --threads {threads:q}"
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
        priority: _evaluate_priority
        resources:
            mem_mb=config["evaluate"].get("mem_mb", 4000),
            runtime=config["evaluate"].get("runtime_min", 30),
            gpu=config.get("evaluate", {}).get("gpus", 0),
        params:
            baseline=lambda wc, input: ["--baseline", input.baseline] if input.baseline else [],
            seq_class=lambda wc: ["--seq-class", _ctc_class(wc)] if _ctc_class(wc) else [],
            lpips=_lpips_flag,
            code=CODE["evaluate"],
            switching=config["evaluate"].get("switching"),  # a change re-evaluates (not on the command line)
            compute=[config["evaluate"].get(k, False) for k in ("amp_bf16", "channels_last")],  # the same
        conda:
            "../../envs/train.yaml"
        shell:
            "inloop evaluate --original {input.original:q} --anchor-stats {input.anchor:q} --off-stats {input.off:q}"
            " --out {output.json:q} --dataset {wildcards.dataset:q} --model {input.model:q} --model-name {wildcards.model:q}"
            " --enhanced {output.enhanced:q}"
            " {params.baseline:q} {params.seq_class:q} {params.lpips:q} --threads {threads:q}"
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
