# inloop: rule all and the stages' rules (workflow/rules/*.smk), the params check and a scheduler fix.
import inloop.params
import inloop.paths
import inloop.scheduling


configfile: "params.yaml"


inloop.params.normalize(config)  # [off, on] written unquoted (dvc exp run -S) reads as booleans
inloop.params.check_params(config, "params.yaml with --configfile/--config")  # src/inloop/params.schema.yaml
inloop.params.check_models(config, "params.yaml with --configfile/--config")


onstart:
    # Snakemake's scheduler otherwise wakes itself once more per finished job, every second (src/inloop/scheduling.py)
    inloop.scheduling.one_reevaluation_timer(workflow)


rule all:
    """The main job: data -> encodes -> patches -> models -> evaluation -> report."""
    input:
        inloop.paths.REPORT_FILES["html"],


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/codec.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
