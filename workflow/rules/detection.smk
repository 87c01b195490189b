# Detectors: the experiment matrix dataset × model × source × share × seed, scored on real test scans.


def synthetic_root(wildcards):
    return SYNTHETIC.format(**wildcards)


def synthetic_inputs(wildcards):
    """The extra labelled sets of a run: its synthetic sets (of its share, with per_share)
    and, for the information-budget control, the budget dataset."""
    sets = [f"{synthetic_root(wildcards)}/{s}" for s in synthetic_sources(wildcards.source)]
    return sets + ([BUDGET_DATASET] if BUDGET in parse_sources(wildcards.source) else [])


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
        cfg=lambda w: cfg_for("train-detector", w.source),
        code=code_for("train-detector"),
        model=lambda w: MODELS[w.model],
        run_dir=lambda w, output: str(Path(output[0]).parent),
        synthetic_root=synthetic_root,
        budget=lambda w: f"--budget {BUDGET_DATASET}" if BUDGET in parse_sources(w.source) else "",
    resources:
        gpu=GPU_JOB,
    log:
        "results/logs/train/{dataset}/{model}/{source}/p{share}/s{seed}.log",
    shell:
        "xsyn train-detector --dataset {input.dataset} --model {params.model:q} --name {wildcards.model} "
        "--share {wildcards.share} --source {wildcards.source} --seed {wildcards.seed} "
        "--synthetic-root {params.synthetic_root} {params.budget} --out {params.run_dir} "
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
