# Detectors: the experiment matrix dataset × model × source × share × seed, scored on real test scans.


def synthetic_inputs(wildcards):
    return [f"data/synthetic/{wildcards.dataset}/{s}" for s in parse_sources(wildcards.source)]


def pretrained_weights(wildcards):
    """A .pt model is an input (a missing file is named before anything runs; new weights
    re-run its detectors); a .yaml is ultralytics' own architecture file."""
    file = MODELS[wildcards.model]
    return [file] if file.endswith(".pt") else []


rule train_detector:
    threads: DETECTOR_THREADS
    input:
        dataset="data/{dataset}",
        synthetic=synthetic_inputs,
        weights=pretrained_weights,
    output:
        "results/runs/{dataset}/{model}/{source}/p{share}/s{seed}/weights.pt",
    params:
        cfg=cfg_for("train-detector"),
        code=code_for("train-detector"),
        model=lambda w: MODELS[w.model],
        run_dir=lambda w, output: str(Path(output[0]).parent),
    resources:
        gpu=GPU_JOB,
    log:
        "results/logs/train/{dataset}/{model}/{source}/p{share}/s{seed}.log",
    shell:
        "xsyn train-detector --dataset {input.dataset} --model {params.model:q} --name {wildcards.model} "
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
        cfg=cfg_for("evaluate"),
        code=code_for("evaluate"),
    resources:
        gpu=GPU_JOB,
    log:
        "results/logs/evaluate/{dataset}/{model}/{source}/p{share}/s{seed}.log",
    shell:
        "xsyn evaluate --weights {input.weights} --dataset {input.dataset} "
        "--out {output} --config-json {params.cfg:q} > {log} 2>&1"
