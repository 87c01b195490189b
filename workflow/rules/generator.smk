# The box-grounded generator: fine-tuned on the real training split from a pretrained model
# (smoke: the tiny X-ray GLIGEN in assets/; paper: GLIGEN 1.4). With finetune.gpus > 1 the
# job asks for that many GPUs (slurm: --gpus=N) and accelerate runs one process on each.

FINETUNE_GPUS = config["finetune"]["gpus"]
if FINETUNE_GPUS > 1 and not GPU_JOB:
    raise WorkflowError(f"finetune.gpus: {FINETUNE_GPUS} needs GPUs, but device {config['device']!r} has none")


rule finetune:
    threads: TORCH_THREADS
    input:
        dataset=f"data/{DATASET}",
        pretrained=pretrained_files(),
    output:
        directory("results/models/generator"),
    params:
        cfg=cfg_for("finetune"),
        code=code_for("finetune"),
        launch=launcher(FINETUNE_GPUS, config["finetune"]["mixed_precision"]),
    resources:
        gpu=GPU_JOB * FINETUNE_GPUS,
    log:
        "results/logs/finetune.log",
    shell:
        "{params.launch} finetune --dataset {input.dataset} --out {output} --work-dir {output}.work "
        "--config-json {params.cfg:q} 2> {log}"


rule generator_samples:
    threads: TORCH_THREADS
    input:
        generator="results/models/generator",
        dataset=f"data/{DATASET}",
    output:
        report("results/grids/generator.png", caption="../report/grid_generator.rst", category="Samples",
               labels={"source": "generator"}),
    params:
        cfg=cfg_for("samples"),
        code=code_for("samples"),
    resources:
        gpu=GPU_JOB,
    log:
        "results/logs/grids/generator.log",
    shell:
        "xsyn samples --generator {input.generator} --dataset {input.dataset} --out {output} "
        "--config-json {params.cfg:q} 2> {log}"
