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
