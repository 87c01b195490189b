# The box-grounded generator: fine-tuned on the real training split from a pretrained model
# (smoke: the tiny X-ray GLIGEN in assets/; paper: GLIGEN 1.4). With finetune.gpus > 1 the
# job asks for that many GPUs (slurm: --gpus=N) and accelerate runs one process on each.
# With synthesis.per_share one fine-tune per detection share, on that share's real subset
# (results/models/generator/p{share}: its fragment's finetune.train_split, xsyn.jobs).

FINETUNE_GPUS = config["finetune"]["gpus"]
if FINETUNE_GPUS > 1 and not GPU_JOB:
    raise WorkflowError(f"finetune.gpus: {FINETUNE_GPUS} needs GPUs, but device {config['device']!r} has none")


rule finetune:
    threads: TORCH_THREADS
    input:
        dataset=f"data/{DATASET}",
        pretrained=pretrained_files(),
    output:
        directory(GENERATOR),
    params:
        cfg=lambda w: cfg_for("finetune", share=job_share(w)),
        code=code_for("finetune"),
        launch=launcher(FINETUNE_GPUS, config["finetune"]["mixed_precision"]),
    resources:
        gpu=GPU_JOB * FINETUNE_GPUS,
    log:
        "results/logs/finetune" + SHARE_LEVEL + ".log",
    shell:
        "{params.launch} finetune --dataset {input.dataset} --out {output} --work-dir {output}.work "
        "--config-json {params.cfg:q} 2> {log}"


# The grid shows one generator: per share, the one of the smallest share (the low-data end).
SAMPLES_SHARE = min(float(s) for s in config["detection"]["shares"]) if PER_SHARE else None


rule generator_samples:
    threads: TORCH_THREADS
    input:
        generator=GENERATOR.format(share=share_tag(SAMPLES_SHARE)) if PER_SHARE else GENERATOR,
        dataset=f"data/{DATASET}",
    output:
        report("results/grids/generator.png", caption="../report/grid_generator.rst", category="Samples",
               labels={"source": "generator"}),
    params:
        cfg=cfg_for("samples", share=SAMPLES_SHARE),
        code=code_for("samples"),
    resources:
        gpu=GPU_JOB,
    log:
        "results/logs/grids/generator.log",
    shell:
        "xsyn samples --generator {input.generator} --dataset {input.dataset} --out {output} "
        "--config-json {params.cfg:q} 2> {log}"
