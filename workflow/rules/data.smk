# Data: the phantom simulator (embedded default) and the import into the dataset contract.

if config["dataset"]["format"] == "phantom":

    rule phantom:
        threads: config["phantom"]["workers"]
        output:
            directory(config["dataset"]["source"]),
        params:
            cfg=cfg_for("phantom"),
            code=code_for("phantom"),
        log:
            "results/logs/phantom.log",
        shell:
            "xsyn phantom --out {output} --config-json {params.cfg:q} 2> {log}"


rule prepare:
    input:
        config["dataset"]["source"],
    output:
        directory(f"data/{DATASET}"),
    params:
        cfg=cfg_for("prepare"),
        code=code_for("prepare"),
    log:
        "results/logs/prepare.log",
    shell:
        "xsyn prepare --source {input} --out {output} --config-json {params.cfg:q} 2> {log}"


if BUDGET_CONFIG and uses_budget():
    # The information-budget control's data: the generator's labelled pre-training scans,
    # remade from the phantom and dataset sections of the config that made them.
    BUDGET_CFG = load_config([BUDGET_CONFIG])

    rule budget_phantom:
        threads: BUDGET_CFG["phantom"]["workers"]
        output:
            directory("data/raw/budget"),
        params:
            cfg=cfg_for("phantom", cfg=BUDGET_CFG),
            code=code_for("phantom"),
        log:
            "results/logs/budget_phantom.log",
        shell:
            "xsyn phantom --out {output} --config-json {params.cfg:q} 2> {log}"

    rule budget_prepare:
        input:
            "data/raw/budget",
        output:
            directory(BUDGET_DATASET),
        params:
            cfg=cfg_for("prepare", cfg=BUDGET_CFG),
            code=code_for("prepare"),
        log:
            "results/logs/budget_prepare.log",
        shell:
            "xsyn prepare --source {input} --out {output} --config-json {params.cfg:q} 2> {log}"
