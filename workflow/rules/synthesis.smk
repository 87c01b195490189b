# Synthesis: one job per shard of source images (atomic folders), then a gather per method
# (and, with synthesis.per_share, per share: from that share's real subset and generator).
# The shard's candidate regions (benign objects: Xsyn-A's places, BOM's patches) are found
# once per shard, by SAM on the run's device when configured, and read by every method.

SHARDS = config["synthesis"]["shards"]
SHARD_DIR = "data/synthetic-shards/{dataset}" + SHARE_LEVEL + "/{method}"
USES_SAM = config["synthesis"]["car"]["segmenter"] == "sam" and bool(config["synthesis"]["car"]["sam_path"])


def shard_dirs(wildcards):
    return expand(
        SHARD_DIR + "/shard-{index:03d}-of-{count:03d}",
        index=range(SHARDS),
        count=SHARDS,
        **wildcards,
    )


def generator_input(wildcards):
    return [GENERATOR.format(**wildcards)] if METHODS[wildcards.method].generator else []


def source_split(wildcards):
    """The real scans a shard draws from: synthesis.source_split (per share: that share's subset)."""
    return share_config(config, job_share(wildcards))["synthesis"]["source_split"]


def candidates_input(wildcards):
    if not METHODS[wildcards.method].generator:
        return []  # TIP reads the dataset's own records
    return [f"data/candidates/{wildcards.dataset}/{source_split(wildcards)}/"
            f"shard-{wildcards.index}-of-{wildcards.nshards}.json"]


def sam_files():
    """The SAM folder's files: inputs of the candidate jobs, so new weights re-run them."""
    if not USES_SAM:
        return []
    folder = Path(config["synthesis"]["car"]["sam_path"])
    found = sorted(str(p) for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
    return found or [str(folder)]


rule candidates:
    threads: TORCH_THREADS if USES_SAM else 1
    input:
        dataset="data/{dataset}",
        sam=sam_files(),
    output:
        "data/candidates/{dataset}/{split}/shard-{index}-of-{nshards}.json",
    params:
        cfg=cfg_for("candidates"),
        code=code_for("candidates"),
    resources:
        gpu=GPU_JOB if USES_SAM else 0,
    log:
        "results/logs/candidates/{dataset}/{split}/{index}-of-{nshards}.log",
    shell:
        "xsyn candidates --dataset {input.dataset} --split {wildcards.split} --shard {wildcards.index} "
        "--shards {wildcards.nshards} --out {output} --config-json {params.cfg:q} 2> {log}"


rule synthesize_shard:
    threads: lambda w: TORCH_THREADS if METHODS[w.method].generator else 1  # tip: numpy + OpenCV, no torch
    input:
        dataset="data/{dataset}",
        generator=generator_input,
        candidates=candidates_input,
    output:
        directory(SHARD_DIR + "/shard-{index}-of-{nshards}"),
    params:
        cfg=lambda w: cfg_for("synthesize", w.method, share=job_share(w)),
        code=code_for("synthesize"),
        generator=lambda w, input: f"--generator {input.generator[0]}" if input.generator else "",
        candidates=lambda w, input: f"--candidates {input.candidates[0]}" if input.candidates else "",
    resources:
        gpu=lambda w: GPU_JOB if METHODS[w.method].generator else 0,
    log:
        "results/logs/synthesize/{dataset}" + SHARE_LEVEL + "/{method}/{index}-of-{nshards}.log",
    shell:
        "xsyn synthesize --method {wildcards.method} --dataset {input.dataset} {params.generator} "
        "{params.candidates} --shard {wildcards.index} --shards {wildcards.nshards} --out {output} "
        "--config-json {params.cfg:q} 2> {log}"


rule gather:
    input:
        shard_dirs,
    output:
        directory(SYNTHETIC + "/{method}"),
    params:
        code=code_for("gather"),
    log:
        "results/logs/gather/{dataset}" + SHARE_LEVEL + "/{method}.log",
    shell:
        "xsyn gather --shards {input} --out {output} 2> {log}"
