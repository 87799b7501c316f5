# Evaluate stage: anchor (filters on) vs filters off, and each trained network, on held-out clips.

ENC = "results/encoded/{codec}/{cfg}/{filters}/{dataset}/{name}_{geom}_420/qp{qp}.json"
ORIG = f"{DATA_OUT}/{{dataset}}/{{name}}_{{geom}}_420.yuv"


ruleorder: evaluate_codec > evaluate_model


rule evaluate_codec:
    """Anchor with filters on vs the filters-off decode (no network)."""
    input:
        original=ORIG,
        anchor=ENC.replace("{filters}", "on"),
        off=ENC.replace("{filters}", NET_IN),
        lpips=LPIPS_STATUS,
    output:
        json="results/eval/none/{codec}/{cfg}/{dataset}/{name}_{geom}_420/qp{qp}.json",
    params:
        code=CODE_EVALUATE,
    log:
        "results/logs/evaluate/none/{codec}/{cfg}/{dataset}/{name}_{geom}_420/qp{qp}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    conda:
        "../../envs/train.yaml"
    shell:
        "inloop evaluate --original {input.original:q} --anchor-stats {input.anchor:q} --off-stats {input.off:q}"
        " --out {output.json:q} --dataset {wildcards.dataset:q} > {log:q} 2>&1"


rule evaluate_model:
    """A trained network applied to the filters-off decode (GL-Fusion IV: whole frames)."""
    input:
        original=ORIG,
        anchor=ENC.replace("{filters}", "on"),
        off=ENC.replace("{filters}", NET_IN),
        model="results/models/{model}/{codec}/{cfg}/qp{qp}/model.pt",
        baseline=_baseline,
        lpips=LPIPS_STATUS,
    output:
        json="results/eval/{model}/{codec}/{cfg}/{dataset}/{name}_{geom}_420/qp{qp}.json",
        enhanced="results/enhanced/{model}/{codec}/{cfg}/{dataset}/{name}_{geom}_420/qp{qp}_{geom}_420.yuv",
    wildcard_constraints:
        model=r"(?!none$)[a-z][a-z0-9-]*",  # 'none' is evaluate_codec's: a missing input is then named, not a cycle
    log:
        "results/logs/evaluate/{model}/{codec}/{cfg}/{dataset}/{name}_{geom}_420/qp{qp}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=config.get("evaluate", {}).get("gpus", 0),
    params:
        baseline=lambda wc, input: ["--baseline", input.baseline] if input.baseline else [],
        code=CODE_EVALUATE,
    conda:
        "../../envs/train.yaml"
    shell:
        "inloop evaluate --original {input.original:q} --anchor-stats {input.anchor:q} --off-stats {input.off:q}"
        " --out {output.json:q} --dataset {wildcards.dataset:q} --model {input.model:q} --enhanced {output.enhanced:q}"
        " {params.baseline:q}"
        " > {log:q} 2>&1"


rule evaluations:
    """Every evaluation: anchor vs filters off, and each network (`snakemake evaluations`; DVC stage evaluate)."""
    input:
        all_evals(),
