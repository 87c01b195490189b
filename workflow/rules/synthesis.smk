# Synthesis: one job per shard of source images (atomic folders), then a gather per method.

SHARDS = config["synthesis"]["shards"]


def shard_dirs(wildcards):
    return expand(
        "data/synthetic-shards/{dataset}/{method}/shard-{index:03d}-of-{count:03d}",
        dataset=wildcards.dataset,
        method=wildcards.method,
        index=range(SHARDS),
        count=SHARDS,
    )


def generator_input(wildcards):
    return ["results/models/generator"] if METHODS[wildcards.method].generator else []


rule synthesize_shard:
    threads: lambda w: TORCH_THREADS if METHODS[w.method].generator else 1  # tip: numpy + OpenCV, no torch
    input:
        dataset="data/{dataset}",
        generator=generator_input,
    output:
        directory("data/synthetic-shards/{dataset}/{method}/shard-{index}-of-{nshards}"),
    params:
        cfg=cfg_json("device", "synthesis", "tip"),
        generator=lambda w, input: f"--generator {input.generator[0]}" if input.generator else "",
    resources:
        gpu=lambda w: GPU_JOB if METHODS[w.method].generator else 0,
    log:
        "results/logs/synthesize/{dataset}/{method}/{index}-of-{nshards}.log",
    shell:
        "xsyn synthesize --method {wildcards.method} --dataset {input.dataset} {params.generator} "
        "--shard {wildcards.index} --shards {wildcards.nshards} --out {output} "
        "--config-json {params.cfg:q} 2> {log}"


rule gather:
    input:
        shard_dirs,
    output:
        directory("data/synthetic/{dataset}/{method}"),
    log:
        "results/logs/gather/{dataset}/{method}.log",
    shell:
        "xsyn gather --shards {input} --out {output} 2> {log}"
