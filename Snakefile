# inloop: rule all and the stages' rules (workflow/rules/*.smk); nothing else.
import inloop.params
import inloop.paths


configfile: "params.yaml"


inloop.params.normalize(config)  # [off, on] written unquoted (dvc exp run -S) reads as booleans
inloop.params.check_params(config, "params.yaml with --configfile/--config")  # src/inloop/params.schema.yaml
inloop.params.check_models(config, "params.yaml with --configfile/--config")


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
