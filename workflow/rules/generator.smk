# The box-grounded generator: fine-tuned (smoke: trained from scratch) on the real training split.


rule finetune:
    threads: TORCH_THREADS
    input:
        f"data/{DATASET}",
    output:
        directory("results/models/generator"),
    params:
        cfg=cfg_json("device", "generator", "finetune"),
    resources:
        gpu=1,
    log:
        "results/logs/finetune.log",
    shell:
        "xsyn finetune --dataset {input} --out {output} --work-dir {output}.work "
        "--config-json {params.cfg:q} 2> {log}"
