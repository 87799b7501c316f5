# Encode stage: every clip x configuration x filter setting x QP, through `inloop encode`.


rule encode:
    input:
        yuv=ORIG,
    output:
        **P.ENCODE_FILES,
    params:
        frames=_clip_frames,
        code=CODE["encode"],
    log:
        P.LOG["encode"],
    benchmark:
        P.JOB_BENCH["encode"]
    priority: _encode_priority
    threads: RES["encode"]["threads"]
    resources:
        mem_mb=RES["encode"]["mem_mb"],
        runtime=RES["encode"]["runtime_min"],
    conda:
        "../../envs/codec.yaml"
    shell:
        "inloop encode --codec {wildcards.codec:q} --in {input.yuv:q} --out {output.bitstream:q}"
        " --decoded {output.decoded:q} --stats {output.stats:q} --qp {wildcards.qp:q}"
        " --config {wildcards.cfg:q} --filters {wildcards.filters:q} --frames {params.frames:q}"
        " > {log:q} 2>&1"


rule encodes:
    """Every clip of every dataset in every configuration, filters off and on (`snakemake encodes`)."""
    input:
        all_encodes(),
