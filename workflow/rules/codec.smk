# Encode stage: every clip x configuration x filter setting x QP, through `inloop encode`.


rule encode:
    input:
        yuv=f"{DATA_OUT}/{{dataset}}/{{name}}_{{geom}}_420.yuv",
    output:
        bitstream="results/encoded/{codec}/{cfg}/{filters}/{dataset}/{name}_{geom}_420/qp{qp}.bin",
        decoded="results/encoded/{codec}/{cfg}/{filters}/{dataset}/{name}_{geom}_420/qp{qp}_{geom}_420.yuv",
        stats="results/encoded/{codec}/{cfg}/{filters}/{dataset}/{name}_{geom}_420/qp{qp}.json",
        codec_log="results/encoded/{codec}/{cfg}/{filters}/{dataset}/{name}_{geom}_420/qp{qp}.log",
    params:
        frames=_clip_frames,
        code=CODE_ENCODE,
    log:
        "results/logs/encode/{codec}/{cfg}/{filters}/{dataset}/{name}_{geom}_420/qp{qp}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
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
