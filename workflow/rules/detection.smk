# Detectors: the experiment matrix dataset × model × source × share × seed, scored on real test scans.


def synthetic_inputs(wildcards):
    return [f"data/synthetic/{wildcards.dataset}/{s}" for s in parse_sources(wildcards.source)]


def model_file(wildcards):
    for m in config["detection"]["models"]:
        if model_stem(m) == wildcards.model:
            return m
    raise ValueError(f"model {wildcards.model!r} is not in detection.models")


rule train_detector:
    threads: DETECTOR_THREADS
    input:
        dataset="data/{dataset}",
        synthetic=synthetic_inputs,
    output:
        "results/runs/{dataset}/{model}/{source}/p{share}/s{seed}/weights.pt",
    params:
        cfg=cfg_json("device", "detection"),
        model=model_file,
        run_dir=lambda w, output: str(Path(output[0]).parent),
    resources:
        gpu=GPU_JOB,
    log:
        "results/logs/train/{dataset}/{model}/{source}/p{share}/s{seed}.log",
    shell:
        "xsyn train-detector --dataset {input.dataset} --model {params.model} "
        "--share {wildcards.share} --source {wildcards.source} --seed {wildcards.seed} "
        "--synthetic-root data/synthetic/{wildcards.dataset} --out {params.run_dir} "
        "--config-json {params.cfg:q} > {log} 2>&1"


rule evaluate:
    threads: DETECTOR_THREADS
    input:
        weights="results/runs/{dataset}/{model}/{source}/p{share}/s{seed}/weights.pt",
        dataset="data/{dataset}",
    output:
        "results/metrics/{dataset}/{model}/{source}/p{share}/s{seed}.json",
    params:
        cfg=cfg_json("device", "detection"),
        splits=" ".join(config["detection"]["eval_splits"]),
    resources:
        gpu=GPU_JOB,
    log:
        "results/logs/evaluate/{dataset}/{model}/{source}/p{share}/s{seed}.log",
    shell:
        "xsyn evaluate --weights {input.weights} --dataset {input.dataset} --splits {params.splits} "
        "--out {output} --config-json {params.cfg:q} > {log} 2>&1"
