# Report stage: BD-rate tables, RD and training plots, claims comparison, one HTML page.


rule report:
    input:
        evals=codec_evals() + model_evals(),
        models=_model_reports(),
        benchmarks=_benchmark_files(),
    output:
        html=report(P.REPORT_FILES["html"], category="Report", caption="../report/index.rst"),
        metrics=P.REPORT_FILES["metrics"],
        plots=report(directory(P.REPORT_FILES["plots"]), patterns=["{name}.png"], category="Plots",
                     caption="../report/plots.rst"),
        tables=report(directory(P.REPORT_FILES["tables"]), patterns=["{name}.csv"], category="Tables",
                      caption="../report/tables.rst"),
    params:
        code=CODE["report"],
    log:
        P.LOG["report"],
    threads: RES["report"]["threads"]
    resources:
        mem_mb=RES["report"]["mem_mb"],
        runtime=RES["report"]["runtime_min"],
    conda:
        "../../envs/report.yaml"
    shell:
        "inloop report --threads {threads:q} > {log:q} 2>&1"  # its defaults: inloop.paths EVAL, MODELS and REPORT
