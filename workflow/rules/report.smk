# Report stage: BD-rate tables, RD and training plots, claims comparison, one HTML page.


rule report:
    input:
        evals=all_evals(),
        models=_model_reports(),
        benchmarks=_benchmark_files(),
    output:
        html="results/report/index.html",
        metrics="results/report/metrics.json",
    params:
        code=CODE_REPORT,
    log:
        "results/logs/report.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    conda:
        "../../envs/report.yaml"
    shell:
        "inloop report --eval-dir results/eval --models-dir results/models --out results/report > {log:q} 2>&1"
