# Report stage: BD-rate tables, RD and training plots, claims comparison, one HTML page.


rule report:
    input:
        evals=all_evals(),
        models=_model_reports(),
        benchmarks=_benchmark_files(),
    output:
        html=report("results/report/index.html", category="Report", caption="../report/index.rst"),
        metrics="results/report/metrics.json",
        plots=report(directory("results/report/plots"), patterns=["{name}.png"], category="Plots",
                     caption="../report/plots.rst"),
        tables=report(directory("results/report/tables"), patterns=["{name}.csv"], category="Tables",
                      caption="../report/tables.rst"),
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
