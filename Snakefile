# inloop: rule all and the stages' rules (workflow/rules/*.smk); nothing else.
configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/codec.smk"


rule all:
    input:
        all_encodes(),
